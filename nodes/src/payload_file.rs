//! The payload file: what `exporter:file` writes and where `exporter:otlp_http` dead-letters,
//! in a format [`read_payloads`] reads back.
//!
//! Format: the line `OTAPDF-PAYLOADS 1\n` once at the start of the file, then one frame per
//! payload: signal (1 byte: 0 logs, 1 metrics, 2 traces), encoding (1 byte: 0 protobuf,
//! 1 JSON), records (u64, little-endian), length (u32, little-endian), then the bytes of the
//! OTLP request.
//!
//! **One writer per file.** Every [`PayloadWriter::open`] of the same file in a process
//! gets a handle to one writer: the versions of a pipeline that a reload runs side by side
//! (the old one draining, the new one running) append to one file through one writer, so
//! the magic line is written once, when the file is created, and frames never interleave.
//! Across processes, the writer holds an exclusive advisory lock on the file: a second
//! process (or a second engine) that opens it fails, naming the file, instead of corrupting
//! it.
//!
//! Each frame is written whole and through (no buffer to flush): a frame that cannot be
//! written whole (a full disk) is cut off again, so the file stays readable up to its last
//! complete frame and the error goes to the payload that did not fit.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{IoSlice, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use otap_df_core::data::{Encoding, OtlpPayload, Signal};

/// The first line of every payload file.
pub const MAGIC: &[u8] = b"OTAPDF-PAYLOADS 1\n";

/// The bytes before each payload in a frame.
const FRAME_HEADER: usize = 14;

/// The file core `core` writes: `path` for core 0, `path.<core>` for the others.
pub fn core_path(path: &Path, core: usize) -> PathBuf {
    if core == 0 {
        path.to_owned()
    } else {
        let mut name = path.as_os_str().to_owned();
        name.push(format!(".{core}"));
        PathBuf::from(name)
    }
}

/// A handle to the one writer of a payload file in this process (see the module
/// documentation). Cloning it, or opening the same file again, shares the writer.
#[derive(Debug, Clone)]
pub struct PayloadWriter {
    shared: Arc<SharedFile>,
}

#[derive(Debug)]
struct SharedFile {
    /// The path it was first opened by.
    path: PathBuf,
    /// The file, and its length: where the next frame starts.
    file: Mutex<(File, u64)>,
}

/// The open payload files of this process, by their file identity: each entry lives as long
/// as a handle to it does.
static OPEN: Mutex<Option<HashMap<FileKey, Weak<SharedFile>>>> = Mutex::new(None);

/// What tells one file from another whatever path names it (links, `..`, relative paths).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum FileKey {
    #[cfg(unix)]
    Inode { device: u64, inode: u64 },
    #[cfg_attr(unix, allow(dead_code))]
    Path(PathBuf),
}

impl FileKey {
    fn of(path: &Path, file: &File) -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let _ = path;
            let metadata = file.metadata()?;
            Ok(Self::Inode {
                device: metadata.dev(),
                inode: metadata.ino(),
            })
        }
        #[cfg(not(unix))]
        {
            let _ = file;
            Ok(Self::Path(std::fs::canonicalize(path)?))
        }
    }
}

impl PayloadWriter {
    /// The writer of `path`: the one this process already has for that file, or a new one
    /// that creates the file (writing the magic line) when it is missing or empty.
    ///
    /// Fails when the file is not empty and is not a payload file (it is left as it is), or
    /// when another process writes it.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        // Held while the file is opened and its header written: two pipeline versions that
        // open the file at once get one writer, and one header.
        let mut open = OPEN.lock().unwrap_or_else(PoisonError::into_inner);
        let open = open.get_or_insert_with(HashMap::new);
        open.retain(|_, writer| writer.strong_count() > 0);
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(path)?;
        let key = FileKey::of(path, &file)?;
        if let Some(shared) = open.get(&key).and_then(Weak::upgrade) {
            return Ok(Self { shared });
        }
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::ResourceBusy,
                    "another process writes this file (it holds its lock); give each engine \
                     a file of its own",
                ));
            }
            Err(std::fs::TryLockError::Error(error)) => return Err(error),
        }
        let length = if file.metadata()?.len() == 0 {
            file.write_all(MAGIC)?;
            MAGIC.len() as u64
        } else {
            end_of_frames(path, &file)?
        };
        let shared = Arc::new(SharedFile {
            path: path.to_owned(),
            file: Mutex::new((file, length)),
        });
        open.insert(key, Arc::downgrade(&shared));
        Ok(Self { shared })
    }

    /// The path the file was first opened by.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Appends one payload, whole and written through to the file; on an error nothing of
    /// it stays in the file.
    pub fn write(&self, data: &OtlpPayload) -> std::io::Result<()> {
        let header = frame_header(data)?;
        let mut file = self
            .shared
            .file
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (file, length) = &mut *file;
        match write_all_vectored(
            file,
            &mut [IoSlice::new(&header), IoSlice::new(data.bytes())],
        ) {
            Ok(()) => {
                *length += (FRAME_HEADER + data.bytes().len()) as u64;
                Ok(())
            }
            Err(error) => {
                // Cut off what part of the frame was written, so that the frames after it
                // can still be read.
                let _ = file.set_len(*length);
                Err(error)
            }
        }
    }
}

/// Where the complete frames of an existing payload file end: its length, or, when its last
/// frame was cut short (a process that stopped while writing it), where that frame starts;
/// the partial frame is then cut off, with a warning, so that the frames appended after it
/// can be read. A file that is not a payload file, or whose frames are not what a writer
/// writes, is an error and is left as it is.
fn end_of_frames(path: &Path, file: &File) -> std::io::Result<u64> {
    use std::io::{Seek, SeekFrom};
    let invalid = |what: String| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{what}; the file is left as it is: name another file, or move this one away"),
        )
    };
    let length = file.metadata()?.len();
    let mut reader = file;
    reader.seek(SeekFrom::Start(0))?;
    let mut start = [0u8; MAGIC.len()];
    let read = read_up_to(&mut reader, &mut start)?;
    if start[..read] != *MAGIC {
        return Err(invalid(
            "the file exists and is not an otap-df payload file (it does not start with \
             `OTAPDF-PAYLOADS 1`)"
                .to_owned(),
        ));
    }
    let mut at = MAGIC.len() as u64;
    while at < length {
        let mut header = [0u8; FRAME_HEADER];
        reader.seek(SeekFrom::Start(at))?;
        let read = read_up_to(&mut reader, &mut header)?;
        let end = if read == FRAME_HEADER {
            if header[0] > 2 || header[1] > 1 {
                return Err(invalid(format!(
                    "the frame at byte {at} has an unknown signal or encoding"
                )));
            }
            let body = u32::from_le_bytes([header[10], header[11], header[12], header[13]]);
            at + FRAME_HEADER as u64 + u64::from(body)
        } else {
            u64::MAX
        };
        if end > length {
            tracing::warn!(
                file = %path.display(),
                at,
                bytes = length - at,
                "the payload file ends with a partial frame (a writer stopped while writing \
                 it); it is cut off, and new frames follow the last complete one"
            );
            file.set_len(at)?;
            return Ok(at);
        }
        at = end;
    }
    Ok(at)
}

/// Reads into `buffer` until it is full or the file ends; the bytes read.
fn read_up_to(reader: &mut impl Read, buffer: &mut [u8]) -> std::io::Result<usize> {
    let mut read = 0;
    while read < buffer.len() {
        match reader.read(&mut buffer[read..]) {
            Ok(0) => break,
            Ok(n) => read += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(read)
}

/// Writes every slice (one system call when the file takes it all at once).
fn write_all_vectored(file: &mut File, slices: &mut [IoSlice<'_>]) -> std::io::Result<()> {
    let mut slices = slices;
    IoSlice::advance_slices(&mut slices, 0);
    while !slices.is_empty() {
        match file.write_vectored(slices) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => IoSlice::advance_slices(&mut slices, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn frame_header(data: &OtlpPayload) -> std::io::Result<[u8; FRAME_HEADER]> {
    let signal = match data.signal() {
        Signal::Logs => 0u8,
        Signal::Metrics => 1,
        Signal::Traces => 2,
    };
    let encoding = match data.encoding() {
        Encoding::Protobuf => 0u8,
        Encoding::Json => 1,
    };
    let length = u32::try_from(data.bytes().len()).map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "a payload larger than 4 GiB cannot be framed",
        )
    })?;
    let mut header = [0u8; FRAME_HEADER];
    header[0] = signal;
    header[1] = encoding;
    header[2..10].copy_from_slice(&data.records().to_le_bytes());
    header[10..14].copy_from_slice(&length.to_le_bytes());
    Ok(header)
}

/// Reads every payload of a payload file.
pub fn read_payloads(path: &Path) -> std::io::Result<Vec<OtlpPayload>> {
    let invalid = |what: String| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {what}", path.display()),
        )
    };
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let mut rest = bytes
        .strip_prefix(MAGIC)
        .ok_or_else(|| invalid("not an otap-df payload file".to_owned()))?;
    let mut payloads = Vec::new();
    while !rest.is_empty() {
        let at = bytes.len() - rest.len();
        if rest.len() < FRAME_HEADER {
            return Err(invalid(format!("truncated frame header at byte {at}")));
        }
        let signal = match rest[0] {
            0 => Signal::Logs,
            1 => Signal::Metrics,
            2 => Signal::Traces,
            other => return Err(invalid(format!("unknown signal {other} at byte {at}"))),
        };
        let encoding = match rest[1] {
            0 => Encoding::Protobuf,
            1 => Encoding::Json,
            other => {
                return Err(invalid(format!(
                    "unknown encoding {other} at byte {}",
                    at + 1
                )));
            }
        };
        let mut records = [0u8; 8];
        records.copy_from_slice(&rest[2..10]);
        let mut length = [0u8; 4];
        length.copy_from_slice(&rest[10..14]);
        let length = u32::from_le_bytes(length) as usize;
        let body = rest
            .get(FRAME_HEADER..FRAME_HEADER + length)
            .ok_or_else(|| invalid(format!("truncated frame at byte {at}")))?;
        payloads.push(OtlpPayload::new(
            signal,
            encoding,
            u64::from_le_bytes(records),
            body.to_vec(),
        ));
        rest = &rest[FRAME_HEADER + length..];
    }
    Ok(payloads)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(records: u64, bytes: &[u8]) -> OtlpPayload {
        OtlpPayload::new(Signal::Logs, Encoding::Protobuf, records, bytes.to_vec())
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "otap-df-payload-file-{name}-{}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn writers_opened_one_after_another_before_any_payload_write_one_header() {
        let dir = temp_dir("one-header");
        let path = dir.join("out.bin");
        // Pipeline versions of a reload: each opens the file while the others still hold it.
        let versions: Vec<PayloadWriter> = (0..7)
            .map(|_| PayloadWriter::open(&path).unwrap())
            .collect();
        for (i, writer) in versions.iter().enumerate().rev() {
            writer.write(&payload(i as u64, &[i as u8; 3])).unwrap();
        }
        let read = read_payloads(&path).unwrap();
        let records: Vec<u64> = read.iter().map(OtlpPayload::records).collect();
        assert_eq!(records, vec![6, 5, 4, 3, 2, 1, 0]);
        assert_eq!(read[0].bytes().as_ref(), &[6, 6, 6]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_file_reopened_after_its_writers_are_gone_is_appended_to_without_a_second_header() {
        let dir = temp_dir("reopen");
        let path = dir.join("out.bin");
        PayloadWriter::open(&path)
            .unwrap()
            .write(&payload(1, b"a"))
            .unwrap();
        PayloadWriter::open(&path)
            .unwrap()
            .write(&payload(2, b"bb"))
            .unwrap();
        let records: Vec<u64> = read_payloads(&path)
            .unwrap()
            .iter()
            .map(OtlpPayload::records)
            .collect();
        assert_eq!(records, vec![1, 2]);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn the_same_file_by_another_path_shares_the_writer() {
        let dir = temp_dir("other-path");
        let path = dir.join("out.bin");
        let first = PayloadWriter::open(&path).unwrap();
        let second = PayloadWriter::open(&dir.join(".").join("out.bin")).unwrap();
        assert!(Arc::ptr_eq(&first.shared, &second.shared));
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn writers_on_many_threads_interleave_whole_frames() {
        let dir = temp_dir("threads");
        let path = dir.join("out.bin");
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let writer = PayloadWriter::open(&path).unwrap();
                    for i in 0..50u64 {
                        // Larger than a pipe or stdio buffer: several pages each.
                        writer.write(&payload(i, &vec![t; 20_000])).unwrap();
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().unwrap();
        }
        let read = read_payloads(&path).unwrap();
        assert_eq!(read.len(), 200);
        for payload in &read {
            let first = payload.bytes()[0];
            assert!(payload.bytes().iter().all(|&b| b == first));
            assert_eq!(payload.bytes().len(), 20_000);
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_file_that_is_not_a_payload_file_is_refused_and_left_as_it_is() {
        let dir = temp_dir("foreign");
        let path = dir.join("notes.txt");
        std::fs::write(&path, b"my notes\n").unwrap();
        let error = PayloadWriter::open(&path).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
        assert!(error.to_string().contains("is not an otap-df payload file"));
        assert_eq!(std::fs::read(&path).unwrap(), b"my notes\n");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_partial_last_frame_is_cut_off_when_the_file_is_opened_again() {
        let dir = temp_dir("partial-tail");
        let path = dir.join("out.bin");
        PayloadWriter::open(&path)
            .unwrap()
            .write(&payload(1, b"abc"))
            .unwrap();
        let complete = std::fs::read(&path).unwrap();
        // A writer that stopped in the middle of its second frame.
        let mut bytes = complete.clone();
        bytes.extend_from_slice(&[0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 9, 0, 0, 0, b'x']);
        std::fs::write(&path, &bytes).unwrap();
        PayloadWriter::open(&path)
            .unwrap()
            .write(&payload(3, b"def"))
            .unwrap();
        let read = read_payloads(&path).unwrap();
        let records: Vec<u64> = read.iter().map(OtlpPayload::records).collect();
        assert_eq!(records, vec![1, 3]);
        assert_eq!(read[1].bytes().as_ref(), b"def");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_file_with_a_corrupt_frame_is_refused_and_left_as_it_is() {
        let dir = temp_dir("corrupt");
        let path = dir.join("out.bin");
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&[7, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, b'x']);
        std::fs::write(&path, &bytes).unwrap();
        let error = PayloadWriter::open(&path).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidData);
        assert!(
            error
                .to_string()
                .starts_with("the frame at byte 18 has an unknown signal or encoding"),
            "{error}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), bytes);
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_file_another_process_holds_is_refused_naming_why() {
        let dir = temp_dir("locked");
        let path = dir.join("out.bin");
        std::fs::write(&path, MAGIC).unwrap();
        // Another open file description holding the lock: what another process's writer does.
        let other = File::options().append(true).open(&path).unwrap();
        other.lock().unwrap();
        let error = PayloadWriter::open(&path).unwrap_err();
        assert_eq!(error.kind(), std::io::ErrorKind::ResourceBusy);
        assert!(
            error
                .to_string()
                .contains("another process writes this file")
        );
        other.unlock().unwrap();
        PayloadWriter::open(&path).unwrap();
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_truncated_frame_is_reported_with_its_offset() {
        let dir = temp_dir("truncated");
        let path = dir.join("out.bin");
        PayloadWriter::open(&path)
            .unwrap()
            .write(&payload(1, b"abc"))
            .unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(&[0, 0, 1]);
        std::fs::write(&path, &bytes).unwrap();
        let error = read_payloads(&path).unwrap_err();
        let at = MAGIC.len() + FRAME_HEADER + 3;
        assert!(
            error
                .to_string()
                .ends_with(&format!("truncated frame header at byte {at}")),
            "{error}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
