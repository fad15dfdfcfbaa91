//! One queue on disk: a folder of segment files, each a header and then records appended in
//! id order.
//!
//! - Segment `<first id, 20 digits>.seg`: [`MAGIC`], then records; they end at the file's end
//!   or at the first record that names another segment (what an earlier use of a reused file
//!   left).
//! - Record: length of the entry (u32 LE), CRC-32 of its segment, time and entry (u32 LE),
//!   when it was appended (u64 LE, milliseconds since the Unix epoch), its segment's first id
//!   (u64 LE), the entry.
//! - `<old first id>.spare`: an emptied segment file kept to be written over by a next
//!   segment (at most [`MAX_SPARES`]).
//! - `acked`: the id below which every entry was acknowledged, written every second when it
//!   moved and when the queue is closed (after a crash, entries acknowledged since are
//!   delivered again: at least once).
//! - `corrupt-<id>.bin`: an entry whose checksum did not match, set aside when it was read.
//!
//! Only the disk thread writes, to the last segment, past what is committed; readers see
//! only committed records (the state's `next_id`). A segment is given up (kept as a spare, or
//! deleted) once each of its entries is acknowledged and a newer one is written to: that is
//! how space comes back. Segments may be given up out of order; a reopen steps over the gaps.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use otap_df_core::capability::{QueueEntry, QueueStats};

use crate::error::DiskQueueError;

/// What every segment starts with.
pub(crate) const MAGIC: &[u8; 8] = b"OTAPDFQ1";
/// A record's bytes before its entry.
pub(crate) const RECORD_HEADER: u64 = 24;
/// The largest entry (a record's length field is 32 bits).
pub(crate) const MAX_ENTRY: usize = u32::MAX as usize;

const ACKED: &str = "acked";

/// Emptied segment files a busy queue keeps to write its next segments into: writing over
/// blocks a file already has needs no size change at its sync, which then costs about half
/// (BENCHMARKS.md, "Durable queue"). Deleted once the queue has started no segment for a
/// second, and at a clean stop.
const MAX_SPARES: usize = 2;

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The CRC-32 of a record of segment `segment`, appended at `at_ms`, holding `entry`.
fn checksum(segment: u64, at_ms: u64, entry: &[u8]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&segment.to_le_bytes());
    crc.update(&at_ms.to_le_bytes());
    crc.update(entry);
    crc.finalize()
}

/// A record's header and checksum for `entry` in segment `segment` (its first id), appended
/// at `at_ms`. Naming the segment tells a record from what an earlier use of a reused file
/// left after the end.
pub(crate) fn record_header(
    entry: &[u8],
    at_ms: u64,
    segment: u64,
) -> [u8; RECORD_HEADER as usize] {
    let mut header = [0u8; RECORD_HEADER as usize];
    header[..4].copy_from_slice(&(entry.len() as u32).to_le_bytes());
    header[4..8].copy_from_slice(&checksum(segment, at_ms, entry).to_le_bytes());
    header[8..16].copy_from_slice(&at_ms.to_le_bytes());
    header[16..].copy_from_slice(&segment.to_le_bytes());
    header
}

/// A record's header, read.
struct Header {
    len: u64,
    crc: u32,
    at_ms: u64,
    segment: u64,
}

fn parse_header(header: &[u8; RECORD_HEADER as usize]) -> Header {
    let word = |range: std::ops::Range<usize>| {
        let mut bytes = [0u8; 8];
        bytes[..range.len()].copy_from_slice(&header[range]);
        u64::from_le_bytes(bytes)
    };
    Header {
        len: word(0..4),
        crc: word(4..8) as u32,
        at_ms: word(8..16),
        segment: word(16..24),
    }
}

fn io(path: &Path, what: &str, error: std::io::Error) -> DiskQueueError {
    DiskQueueError::Io {
        path: path.to_path_buf(),
        message: format!("{what}: {error}"),
    }
}

/// Where a record is: its segment (by first id), offset and entry length, and when it was
/// appended.
#[derive(Debug, Clone, Copy)]
struct Location {
    offset: u64,
    len: u64,
    at_ms: u64,
}

/// One segment file.
struct Segment {
    first_id: u64,
    path: PathBuf,
    file: Arc<File>,
    /// Committed bytes (header included).
    len: u64,
    /// Committed records.
    records: u64,
    /// Records acknowledged.
    acked: u64,
    /// Whether a newer segment is written to.
    sealed: bool,
    /// Bytes written (committed or on their way to a sync).
    written: u64,
}

impl Segment {
    fn holds(&self, id: u64) -> bool {
        (self.first_id..self.first_id + self.records).contains(&id)
    }

    /// Sealed, every record committed and acknowledged.
    fn done(&self) -> bool {
        self.sealed && self.written == self.len && self.acked == self.records
    }
}

/// The queue's state, behind its lock.
struct State {
    segments: VecDeque<Segment>,
    /// The id the next committed record gets.
    next_id: u64,
    /// The id the next record written gets (ahead of `next_id` while a sync is on its way).
    written_id: u64,
    /// Why appends are refused: a write or sync failed, and what is in the files after the
    /// last commit is not known.
    broken: Option<String>,
    /// The next record to claim, and its offset in its segment.
    cursor: (u64, u64),
    claimed: HashMap<u64, Location>,
    released: BTreeMap<u64, Location>,
    /// Committed entries not acknowledged.
    entries: u64,
    /// Bytes of the segment files.
    bytes: u64,
    /// The newest entries, claimed from memory rather than read back.
    tail: Tail,
    /// Emptied segment files kept for reuse (`<old first id>.spare`).
    spares: Vec<PathBuf>,
    /// Segments started so far.
    started: u64,
}

/// The bytes of the newest entries a queue keeps in memory: while the pump keeps up, it claims
/// what was just appended without reading it back; a backlog beyond it is read from disk,
/// so memory does not grow with the backlog.
pub(crate) const TAIL_CACHE: u64 = 16 << 20;

/// The newest committed entries (consecutive ids up to the last), up to [`TAIL_CACHE`] bytes.
#[derive(Default)]
struct Tail {
    entries: VecDeque<(u64, u64, Bytes)>,
    bytes: u64,
}

impl Tail {
    fn push(&mut self, id: u64, at_ms: u64, entry: Bytes) {
        self.bytes += entry.len() as u64;
        self.entries.push_back((id, at_ms, entry));
        while self.bytes > TAIL_CACHE {
            self.pop_front();
        }
    }

    fn pop_front(&mut self) -> Option<(u64, Bytes)> {
        let (_, at_ms, entry) = self.entries.pop_front()?;
        self.bytes -= entry.len() as u64;
        Some((at_ms, entry))
    }

    /// Entry `id` and when it was appended, when it is the oldest held; older ones are let
    /// go (they were claimed).
    fn take(&mut self, id: u64) -> Option<(u64, Bytes)> {
        while self
            .entries
            .front()
            .is_some_and(|(oldest, _, _)| *oldest < id)
        {
            self.pop_front();
        }
        match self.entries.front() {
            Some((oldest, _, _)) if *oldest == id => self.pop_front(),
            _ => None,
        }
    }
}

/// What reading a claimed record found.
pub(crate) enum Claimed {
    Entry(QueueEntry),
    /// Its checksum did not match: set aside (in the file named), skipped.
    Corrupt {
        id: u64,
        kept_in: PathBuf,
    },
    None,
}

/// One queue's folder.
pub(crate) struct Log {
    dir: PathBuf,
    state: Mutex<State>,
    /// The store's count of bytes on disk (and on their way), which this queue's segments
    /// add to as they are created and take from as they are deleted.
    used: Arc<AtomicU64>,
    /// What `acked` says.
    acked_written: AtomicU64,
    /// Segments started at the last [`drop_spares`](Self::drop_spares).
    started_at_last_look: AtomicU64,
    /// A segment written to whose every record is acknowledged is deleted too once it holds
    /// this much (an eighth of `segment_bytes`): a drained queue gives its disk back, and a
    /// queue that keeps up does not create a file per batch.
    retire_bytes: u64,
    /// Told when records are committed.
    pub(crate) appended: tokio::sync::Notify,
}

impl Log {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Opens (creating it when missing) the queue folder `dir`, its bytes counted in `used`:
    /// reads where each segment's records end; a torn tail of the last segment (a crash
    /// while it was written) is cut off and its bytes returned. Anything else that is wrong
    /// is an error naming the file.
    pub(crate) fn open(
        dir: &Path,
        used: Arc<AtomicU64>,
        segment_bytes: u64,
    ) -> Result<(Self, u64), DiskQueueError> {
        std::fs::create_dir_all(dir).map_err(|e| io(dir, "cannot create the folder", e))?;
        let mut names = Vec::new();
        let mut acked_below = 0;
        let mut spares = Vec::new();
        let mut id_floor = 0;
        for item in std::fs::read_dir(dir).map_err(|e| io(dir, "cannot read the folder", e))? {
            let item = item.map_err(|e| io(dir, "cannot read the folder", e))?;
            let path = item.path();
            let name = item.file_name().to_string_lossy().into_owned();
            if name == ACKED {
                acked_below = read_acked(&path)?;
                continue;
            }
            if name.starts_with("corrupt-") && name.ends_with(".bin") {
                continue;
            }
            if let Some(old) = name
                .strip_suffix(".spare")
                .filter(|digits| digits.len() == 20)
                .and_then(|digits| digits.parse::<u64>().ok())
            {
                // Ids go on after every id a file here was used for.
                id_floor = id_floor.max(old + 1);
                spares.push(path);
                continue;
            }
            let first = name
                .strip_suffix(".seg")
                .filter(|digits| digits.len() == 20)
                .and_then(|digits| digits.parse::<u64>().ok());
            match first {
                Some(first) if path.is_file() => names.push((first, path)),
                _ => {
                    return Err(DiskQueueError::Foreign {
                        path,
                        why: "not a segment (`<20 digits>.seg`), a spare (`<20 digits>.spare`) nor `acked`"
                            .to_owned(),
                    });
                }
            }
        }
        names.sort();
        let mut segments = VecDeque::new();
        let mut torn = 0;
        let count = names.len();
        for (index, (first_id, path)) in names.into_iter().enumerate() {
            let last = index + 1 == count;
            let (segment, cut) = open_segment(first_id, path, last)?;
            torn += cut;
            // A gap is a segment delivered and deleted before the ones around it.
            if let Some(previous) = segments.back()
                && previous_end(previous) > first_id
            {
                return Err(DiskQueueError::Corrupt {
                    path: segment.path,
                    offset: 0,
                    why: format!(
                        "it starts at entry {first_id}, before the segment before it ends \
                         (entry {})",
                        previous_end(previous)
                    ),
                });
            }
            segments.push_back(segment);
        }
        let next_id = segments
            .back()
            .map_or(acked_below, previous_end)
            .max(id_floor);
        let bytes = segments.iter().map(|s| s.len).sum();
        let mut state = State {
            segments,
            next_id,
            written_id: next_id,
            broken: None,
            cursor: (next_id, 0),
            claimed: HashMap::new(),
            released: BTreeMap::new(),
            entries: 0,
            bytes,
            tail: Tail::default(),
            spares,
            started: 0,
        };
        // Entries below the mark were acknowledged before the last close.
        let start = state
            .segments
            .front()
            .map_or(next_id, |s| s.first_id.max(acked_below.min(next_id)));
        for segment in &mut state.segments {
            segment.acked = start.saturating_sub(segment.first_id).min(segment.records);
        }
        state.entries = state.segments.iter().map(|s| s.records - s.acked).sum();
        state.cursor = (start, offset_of(&state, start)?);
        used.fetch_add(bytes, Ordering::Relaxed);
        let log = Self {
            dir: dir.to_path_buf(),
            state: Mutex::new(state),
            used,
            acked_written: AtomicU64::new(acked_below),
            started_at_last_look: AtomicU64::new(u64::MAX),
            retire_bytes: segment_bytes / 8,
            appended: tokio::sync::Notify::new(),
        };
        log.drop_done();
        Ok((log, torn))
    }

    /// Claims the oldest record no one holds: a released one first, then the next in order.
    pub(crate) fn claim(&self) -> std::io::Result<Claimed> {
        let mut state = self.state();
        let (id, location) = if let Some((id, location)) = state.released.pop_first() {
            (id, location)
        } else {
            let Some((id, index, offset)) = at_cursor(&state) else {
                return Ok(Claimed::None);
            };
            if let Some((at_ms, bytes)) = state.tail.take(id) {
                let len = bytes.len() as u64;
                let location = Location { offset, len, at_ms };
                state.cursor = (id + 1, offset + RECORD_HEADER + len);
                state.claimed.insert(id, location);
                return Ok(Claimed::Entry(QueueEntry { id, bytes }));
            }
            let mut header = [0u8; RECORD_HEADER as usize];
            state.segments[index]
                .file
                .read_exact_at(&mut header, offset)?;
            let Header { len, at_ms, .. } = parse_header(&header);
            state.cursor = (id + 1, offset + RECORD_HEADER + len);
            (id, Location { offset, len, at_ms })
        };
        let read = self.read(&state, id, location);
        match read {
            Ok(Some(bytes)) => {
                state.claimed.insert(id, location);
                Ok(Claimed::Entry(QueueEntry { id, bytes }))
            }
            Ok(None) => {
                let kept_in = self.dir.join(format!("corrupt-{id:020}.bin"));
                let segment = state.segments.iter().find(|s| s.holds(id));
                if let Some(segment) = segment {
                    let mut bytes = vec![0u8; (RECORD_HEADER + location.len) as usize];
                    segment.file.read_exact_at(&mut bytes, location.offset)?;
                    File::create(&kept_in)?.write_all(&bytes)?;
                }
                acknowledge(&mut state, id);
                drop(state);
                self.drop_done();
                Ok(Claimed::Corrupt { id, kept_in })
            }
            Err(error) => {
                state.released.insert(id, location);
                Err(error)
            }
        }
    }

    /// Record `id`'s entry at `location`; `None` when its checksum does not match.
    fn read(&self, state: &State, id: u64, location: Location) -> std::io::Result<Option<Bytes>> {
        let Some(segment) = state.segments.iter().find(|s| s.holds(id)) else {
            return Err(std::io::Error::other(format!("entry {id} has no segment")));
        };
        let mut record = vec![0u8; (RECORD_HEADER + location.len) as usize];
        segment.file.read_exact_at(&mut record, location.offset)?;
        let header: &[u8; RECORD_HEADER as usize] = record[..RECORD_HEADER as usize]
            .try_into()
            .map_err(std::io::Error::other)?;
        let header = parse_header(header);
        let first_id = segment.first_id;
        let entry = Bytes::from(record).slice(RECORD_HEADER as usize..);
        if header.len != location.len
            || header.segment != first_id
            || checksum(first_id, header.at_ms, &entry) != header.crc
        {
            return Ok(None);
        }
        Ok(Some(entry))
    }

    /// Acknowledges claimed record `id`: `false` when it was not claimed.
    pub(crate) fn acknowledge(&self, id: u64) -> bool {
        let mut state = self.state();
        if state.claimed.remove(&id).is_none() {
            return false;
        }
        acknowledge(&mut state, id);
        drop(state);
        self.drop_done();
        true
    }

    /// Gives claimed record `id` back: `false` when it was not claimed.
    pub(crate) fn release(&self, id: u64) -> bool {
        let mut state = self.state();
        match state.claimed.remove(&id) {
            Some(location) => {
                state.released.insert(id, location);
                drop(state);
                self.appended.notify_waiters();
                true
            }
            None => false,
        }
    }

    /// Deletes the segments whose every entry is acknowledged and that are not written to,
    /// and gives their bytes back to `used`. A segment that cannot be deleted stays
    /// (counted), and is tried again next time.
    fn drop_done(&self) {
        let mut state = self.state();
        if let Some(last) = state.segments.back_mut()
            && !last.sealed
            && last.records > 0
            && last.len >= self.retire_bytes
            && last.written == last.len
            && last.acked == last.records
        {
            // Drained: the next write starts a new segment.
            last.sealed = true;
        }
        let mut index = 0;
        while index < state.segments.len() {
            if !state.segments[index].done() {
                index += 1;
                continue;
            }
            let path = state.segments[index].path.clone();
            let first_id = state.segments[index].first_id;
            let kept = (state.spares.len() < MAX_SPARES)
                .then(|| self.dir.join(format!("{first_id:020}.spare")))
                .filter(|spare| std::fs::rename(&path, spare).is_ok());
            let gone = match kept {
                Some(spare) => {
                    state.spares.push(spare);
                    Ok(())
                }
                None => std::fs::remove_file(&path),
            };
            match gone {
                Ok(()) => {
                    if let Some(segment) = state.segments.remove(index) {
                        state.bytes -= segment.len;
                        self.used.fetch_sub(segment.len, Ordering::Relaxed);
                    }
                }
                Err(error) => {
                    tracing::warn!(file = %path.display(), %error,
                        "cannot delete a delivered segment; trying again later");
                    index += 1;
                }
            }
        }
    }

    /// Deletes the spare segment files when no segment was started since the last look (the
    /// extension's task looks every second), or at once when `now`: an idle queue gives all
    /// its disk back.
    pub(crate) fn drop_spares(&self, now: bool) {
        let mut state = self.state();
        let started = state.started;
        let idle = self.started_at_last_look.swap(started, Ordering::Relaxed) == started;
        if now || idle {
            for spare in state.spares.drain(..) {
                if let Err(error) = std::fs::remove_file(&spare) {
                    tracing::warn!(file = %spare.display(), %error, "cannot delete a spare segment");
                }
            }
        }
    }

    /// What the queue holds: entries, bytes, and the age of the oldest not acknowledged.
    pub(crate) fn stats(&self) -> QueueStats {
        let state = self.state();
        let mut oldest = state
            .claimed
            .values()
            .chain(state.released.values())
            .map(|l| l.at_ms)
            .min();
        if let Some((_, index, offset)) = at_cursor(&state) {
            let mut header = [0u8; RECORD_HEADER as usize];
            if state.segments[index]
                .file
                .read_exact_at(&mut header, offset)
                .is_ok()
            {
                let at_ms = parse_header(&header).at_ms;
                oldest = Some(oldest.map_or(at_ms, |o| o.min(at_ms)));
            }
        }
        QueueStats {
            entries: state.entries,
            bytes: state.bytes,
            oldest: oldest.map(|at| Duration::from_millis(now_ms().saturating_sub(at))),
        }
    }

    /// Where the disk thread appends `records` records of `len` bytes: the segment (by its first
    /// id), its file and where its written bytes end — the last segment, or a new one when
    /// the last is sealed, missing, or would pass `segment_bytes` with them (a segment holds
    /// one batch at least) — and counts them written. An error when the queue is broken.
    pub(crate) fn write(
        &self,
        records: u64,
        len: u64,
        segment_bytes: u64,
    ) -> Result<(u64, Arc<File>, u64), String> {
        let mut state = self.state();
        if let Some(broken) = &state.broken {
            return Err(broken.clone());
        }
        let fits = state.segments.back().is_some_and(|last| {
            !last.sealed
                && (last.written == MAGIC.len() as u64 || last.written + len <= segment_bytes)
        });
        if !fits {
            drop(state);
            self.new_segment().map_err(|e| e.to_string())?;
            state = self.state();
        }
        let written_id = state.written_id;
        let Some(last) = state.segments.back_mut() else {
            return Err("no segment to write to".to_owned());
        };
        let at = (last.first_id, last.file.clone(), last.written);
        last.written += len;
        state.written_id = written_id + records;
        Ok(at)
    }

    /// From now on appends are refused for `why` (a write or sync failed).
    pub(crate) fn fail(&self, why: &str) {
        let mut state = self.state();
        if state.broken.is_none() {
            tracing::error!(queue = %self.dir.display(), why,
                "the queue refuses appends until the engine restarts; what it acknowledged before is on disk");
            state.broken = Some(format!("{why} (the queue refuses appends until a restart)"));
        }
    }

    /// Whether appends are refused.
    pub(crate) fn is_broken(&self) -> bool {
        self.state().broken.is_some()
    }

    /// A new segment after the last, which it seals.
    fn new_segment(&self) -> Result<(), DiskQueueError> {
        let mut state = self.state();
        let first_id = state.written_id;
        let path = self.dir.join(format!("{first_id:020}.seg"));
        // An emptied segment's file when there is one: its records are told from this
        // segment's by the segment id they name.
        let reused = state
            .spares
            .pop()
            .filter(|spare| std::fs::rename(spare, &path).is_ok());
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(reused.is_none())
            .open(&path)
            .map_err(|e| io(&path, "cannot create a segment", e))?;
        file.write_all_at(MAGIC, 0)
            .and_then(|()| file.sync_all())
            .map_err(|e| io(&path, "cannot write a segment", e))?;
        state.started += 1;
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .map_err(|e| io(&self.dir, "cannot sync the folder", e))?;
        if let Some(last) = state.segments.back_mut() {
            last.sealed = true;
        }
        let file = Arc::new(file);
        let header = MAGIC.len() as u64;
        state.segments.push_back(Segment {
            first_id,
            path,
            file: file.clone(),
            len: header,
            records: 0,
            acked: 0,
            sealed: false,
            written: header,
        });
        state.bytes += header;
        self.used.fetch_add(header, Ordering::Relaxed);
        drop(state);
        self.drop_done();
        Ok(())
    }

    /// The records of `entries`, `bytes` bytes in all, written to segment `segment` after
    /// its committed end and synced: readers see them (and claim them from memory while
    /// they are among the newest [`TAIL_CACHE`] bytes). Writes are committed in the order
    /// they were written.
    pub(crate) fn committed(
        &self,
        segment: u64,
        entries: impl ExactSizeIterator<Item = Bytes>,
        bytes: u64,
        at_ms: u64,
    ) {
        let records = entries.len() as u64;
        let mut state = self.state();
        if let Some(written) = state.segments.iter_mut().find(|s| s.first_id == segment) {
            written.len += bytes;
            written.records += records;
        }
        let first = state.next_id;
        for (id, entry) in (first..).zip(entries) {
            state.tail.push(id, at_ms, entry);
        }
        state.next_id += records;
        state.entries += records;
        state.bytes += bytes;
        drop(state);
        self.appended.notify_waiters();
    }

    /// The lowest id not acknowledged, written to `acked` (every second, and on close)
    /// when it moved since it was last written.
    pub(crate) fn write_acked(&self) -> std::io::Result<()> {
        let state = self.state();
        let low = state
            .claimed
            .keys()
            .chain(state.released.keys())
            .copied()
            .chain(std::iter::once(state.cursor.0))
            .min()
            .unwrap_or(state.next_id);
        drop(state);
        if self.acked_written.swap(low, Ordering::Relaxed) == low {
            return Ok(());
        }
        let path = self.dir.join(ACKED);
        let temporary = self.dir.join("acked.new");
        let mut file = File::create(&temporary)?;
        file.write_all(&low.to_le_bytes())?;
        file.sync_all()?;
        std::fs::rename(&temporary, &path)
    }
}

/// The record the cursor is at — its id, its segment's index and its offset — stepping over
/// a gap (segments delivered and given up before the ones around them); `None` when every
/// committed record has been claimed. The cursor's offset is the end of the record before,
/// which for a segment's first record is in another file: there it is after [`MAGIC`].
fn at_cursor(state: &State) -> Option<(u64, usize, u64)> {
    let (id, offset) = state.cursor;
    let index = state
        .segments
        .iter()
        .position(|s| s.first_id + s.records > id)?;
    let first_id = state.segments[index].first_id;
    let id = id.max(first_id);
    if id >= state.next_id {
        return None;
    }
    let offset = if id == first_id {
        MAGIC.len() as u64
    } else {
        offset
    };
    Some((id, index, offset))
}

fn acknowledge(state: &mut State, id: u64) {
    if let Some(segment) = state.segments.iter_mut().find(|s| s.holds(id)) {
        segment.acked += 1;
        state.entries -= 1;
    }
}

fn previous_end(segment: &Segment) -> u64 {
    segment.first_id + segment.records
}

/// The offset of record `id` (the first not acknowledged), walking its segment's headers.
fn offset_of(state: &State, id: u64) -> Result<u64, DiskQueueError> {
    let Some(segment) = state.segments.iter().find(|s| s.holds(id)) else {
        return Ok(0);
    };
    let mut offset = MAGIC.len() as u64;
    for _ in segment.first_id..id {
        let mut header = [0u8; RECORD_HEADER as usize];
        segment
            .file
            .read_exact_at(&mut header, offset)
            .map_err(|e| io(&segment.path, "cannot read", e))?;
        offset += RECORD_HEADER + parse_header(&header).len;
    }
    Ok(offset)
}

fn read_acked(path: &Path) -> Result<u64, DiskQueueError> {
    let bytes = std::fs::read(path).map_err(|e| io(path, "cannot read", e))?;
    let bytes: [u8; 8] = bytes.try_into().map_err(|_| DiskQueueError::Foreign {
        path: path.to_path_buf(),
        why: "an `acked` file holds 8 bytes".to_owned(),
    })?;
    Ok(u64::from_le_bytes(bytes))
}

/// Opens segment `path` (first id `first_id`) and finds where its records end, checking
/// each record's length, and in the `last` segment its checksum too (a sealed segment's are
/// checked as its records are read). In the last segment, a record that is cut short or
/// does not match is a torn tail (a crash while it was written, before it was acknowledged):
/// the file is cut there and the bytes cut are returned. In a sealed one it is an error.
fn open_segment(
    first_id: u64,
    path: PathBuf,
    last: bool,
) -> Result<(Segment, u64), DiskQueueError> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .map_err(|e| io(&path, "cannot open", e))?;
    let size = file
        .metadata()
        .map_err(|e| io(&path, "cannot read", e))?
        .len();
    let mut magic = [0u8; 8];
    if size < MAGIC.len() as u64 || file.read_exact_at(&mut magic, 0).is_err() || &magic != MAGIC {
        return Err(DiskQueueError::Foreign {
            path,
            why: "it does not start as a segment does".to_owned(),
        });
    }
    let mut offset = MAGIC.len() as u64;
    let mut records = 0;
    let mut entry = Vec::new();
    // Where the records end, and what is wrong there (with the bytes of the record cut).
    let damage = loop {
        if offset == size {
            break None;
        }
        if size - offset < RECORD_HEADER {
            break Some(("a record's header is cut short", size - offset));
        }
        let mut header = [0u8; RECORD_HEADER as usize];
        file.read_exact_at(&mut header, offset)
            .map_err(|e| io(&path, "cannot read", e))?;
        let header = parse_header(&header);
        if header.segment != first_id {
            // The end: what follows is what an earlier use of the file left (or nothing).
            break None;
        }
        if size - offset - RECORD_HEADER < header.len {
            break Some(("a record is cut short", size - offset));
        }
        if last {
            entry.resize(header.len as usize, 0);
            file.read_exact_at(&mut entry, offset + RECORD_HEADER)
                .map_err(|e| io(&path, "cannot read", e))?;
            if checksum(first_id, header.at_ms, &entry) != header.crc {
                break Some((
                    "a record's checksum does not match",
                    RECORD_HEADER + header.len,
                ));
            }
        }
        offset += RECORD_HEADER + header.len;
        records += 1;
    };
    let cut = match damage {
        None => 0,
        Some((why, _)) if !last => {
            return Err(DiskQueueError::Corrupt {
                path,
                offset,
                why: why.to_owned(),
            });
        }
        Some((why, bytes)) => {
            file.set_len(offset)
                .and_then(|()| file.sync_all())
                .map_err(|e| io(&path, "cannot cut a torn tail", e))?;
            tracing::warn!(file = %path.display(), offset, bytes, why,
                "cut a torn tail (a crash while it was written; it was never acknowledged)");
            bytes
        }
    };
    Ok((
        Segment {
            first_id,
            path,
            file: Arc::new(file),
            len: offset,
            records,
            acked: 0,
            sealed: !last,
            written: offset,
        },
        cut,
    ))
}
