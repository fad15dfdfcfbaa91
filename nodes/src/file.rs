//! `exporter:file`: appends every payload to a file, in a format [`read_payloads`] reads back.
//!
//! Format: the line `OTAPDF-PAYLOADS 1\n` once at the start of the file, then one frame per
//! payload: signal (1 byte: 0 logs, 1 metrics, 2 traces), encoding (1 byte: 0 protobuf,
//! 1 JSON), records (u64, little-endian), length (u32, little-endian), then the bytes of the
//! OTLP request. Writes are buffered and flushed when the exporter finishes. Writing blocks
//! the core's thread: this exporter is for tests, demos and captures, not for production
//! rates.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use otap_df_core::config::{ComponentConfig, ComponentKind, ConfigError};
use otap_df_core::data::{Encoding, OtlpPayload, Signal};
use otap_df_core::extension::Capabilities;
use otap_df_core::node::NodeFactory;
use otap_df_core::node::{LocalExporter, NodeContext, NodeError, NodeInstance};
use serde::Deserialize;

/// The first line of every payload file.
pub const MAGIC: &[u8] = b"OTAPDF-PAYLOADS 1\n";

/// `config:` of `exporter:file`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// The file to append to (created when missing). With several cores, each core appends
    /// to its own file: `<path>.<core>` for cores after the first.
    pub path: PathBuf,
}

impl FileConfig {
    /// Decodes and checks the block (no file is opened).
    pub fn decode(config: &ComponentConfig<'_>) -> Result<Self, ConfigError> {
        let decoded: Self = config.decode()?;
        if decoded.path.as_os_str().is_empty() {
            return Err(config.invalid("path", "`path` is empty; name the file to write"));
        }
        Ok(decoded)
    }
}

/// `exporter:file`.
pub static FILE: NodeFactory =
    NodeFactory::new(ComponentKind::Exporter, "file", env!("CARGO_PKG_NAME"))
        .description("appends every payload to a file in a re-readable format")
        .validate_config(|config| FileConfig::decode(config).map(drop))
        .create(create);

fn create(
    context: &NodeContext,
    config: &ComponentConfig<'_>,
    _: &mut Capabilities,
) -> Result<NodeInstance, NodeError> {
    let config = FileConfig::decode(config)?;
    let path = core_path(&config.path, context.core);
    let writer = PayloadWriter::open(&path)
        .map_err(|e| context.error(format!("cannot open `{}`: {e}", path.display())))?;
    Ok(NodeInstance::Exporter(Box::new(FileExporter {
        node: context.node_id.clone(),
        path,
        writer,
    })))
}

/// Appends payloads to a file in the format [`read_payloads`] reads (the magic line first
/// when the file is new). Buffered: call [`flush`](Self::flush).
#[derive(Debug)]
pub struct PayloadWriter {
    writer: BufWriter<File>,
}

impl PayloadWriter {
    /// Opens `path` for appending, creating it (and writing the magic line) when missing.
    pub fn open(path: &Path) -> std::io::Result<Self> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let empty = file.metadata().map(|m| m.len() == 0).unwrap_or(false);
        let mut writer = BufWriter::new(file);
        if empty {
            writer.write_all(MAGIC)?;
        }
        Ok(Self { writer })
    }

    /// Appends one payload.
    pub fn write(&mut self, data: &OtlpPayload) -> std::io::Result<()> {
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
        let mut header = [0u8; 14];
        header[0] = signal;
        header[1] = encoding;
        header[2..10].copy_from_slice(&data.records().to_le_bytes());
        header[10..14].copy_from_slice(&length.to_le_bytes());
        self.writer.write_all(&header)?;
        self.writer.write_all(data.bytes())
    }

    /// Writes out what is buffered.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.writer.flush()
    }
}

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

struct FileExporter {
    node: String,
    path: PathBuf,
    writer: PayloadWriter,
}

impl FileExporter {
    fn failed(&self, e: std::io::Error) -> NodeError {
        NodeError::Failed {
            node: self.node.clone(),
            message: format!("cannot write `{}`: {e}", self.path.display()),
        }
    }
}

#[otap_df_core::async_trait(?Send)]
impl LocalExporter for FileExporter {
    /// Written through to the file before it counts as exported: a full disk fails the
    /// payload it could not hold, never a later one, and nothing is counted `out` that is
    /// not in the file.
    async fn export(&mut self, data: OtlpPayload) -> Result<(), NodeError> {
        self.writer
            .write(&data)
            .and_then(|()| self.writer.flush())
            .map_err(|e| self.failed(e))
    }

    async fn finish(&mut self) -> Result<(), NodeError> {
        self.writer.flush().map_err(|e| self.failed(e))
    }
}

/// Reads every payload of a file written by `exporter:file`.
pub fn read_payloads(path: &Path) -> std::io::Result<Vec<OtlpPayload>> {
    let invalid = |what: &str| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}: {what}", path.display()),
        )
    };
    let mut bytes = Vec::new();
    File::open(path)?.read_to_end(&mut bytes)?;
    let mut rest = bytes
        .strip_prefix(MAGIC)
        .ok_or_else(|| invalid("not an otap-df payload file"))?;
    let mut payloads = Vec::new();
    while !rest.is_empty() {
        if rest.len() < 14 {
            return Err(invalid("truncated frame header"));
        }
        let signal = match rest[0] {
            0 => Signal::Logs,
            1 => Signal::Metrics,
            2 => Signal::Traces,
            _ => return Err(invalid("unknown signal")),
        };
        let encoding = match rest[1] {
            0 => Encoding::Protobuf,
            1 => Encoding::Json,
            _ => return Err(invalid("unknown encoding")),
        };
        let mut records = [0u8; 8];
        records.copy_from_slice(&rest[2..10]);
        let mut length = [0u8; 4];
        length.copy_from_slice(&rest[10..14]);
        let length = u32::from_le_bytes(length) as usize;
        let body = rest
            .get(14..14 + length)
            .ok_or_else(|| invalid("truncated frame"))?;
        payloads.push(OtlpPayload::new(
            signal,
            encoding,
            u64::from_le_bytes(records),
            body.to_vec(),
        ));
        rest = &rest[14 + length..];
    }
    Ok(payloads)
}
