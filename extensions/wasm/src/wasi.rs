//! WASI preview 1 with nothing opened: the functions a guest language's runtime calls before
//! it runs a line of the guest's own (Go's `GOOS=wasip1` runtime and standard library need
//! these), answered so that nothing leaves the sandbox. No arguments, no environment, no
//! preopened directory and no file but the three standard ones (output and error become the
//! extension's log lines; input is empty), a clock, random bytes, and a `poll_oneoff` that
//! never waits: a clock subscription is reported due at once (a guest's `time.Sleep` returns
//! early rather than stalling the core that serves it).

use std::time::{SystemTime, UNIX_EPOCH};

use wasmtime::{Caller, Linker, Memory, ValType};

use crate::abi::Function;
use crate::guest::{Host, monotonic_ns};

/// The module the functions are imported from.
pub const MODULE: &str = "wasi_snapshot_preview1";

const I32: ValType = ValType::I32;
const I64: ValType = ValType::I64;

const fn wasi(
    name: &'static str,
    params: &'static [ValType],
    results: &'static [ValType],
) -> Function {
    Function {
        module: MODULE,
        name,
        params,
        results,
    }
}

/// The WASI functions offered, with their types.
pub const FUNCTIONS: &[Function] = &[
    wasi("args_get", &[I32, I32], &[I32]),
    wasi("args_sizes_get", &[I32, I32], &[I32]),
    wasi("environ_get", &[I32, I32], &[I32]),
    wasi("environ_sizes_get", &[I32, I32], &[I32]),
    wasi("clock_time_get", &[I32, I64, I32], &[I32]),
    wasi("fd_write", &[I32, I32, I32, I32], &[I32]),
    wasi("fd_close", &[I32], &[I32]),
    wasi("fd_fdstat_get", &[I32, I32], &[I32]),
    wasi("fd_fdstat_set_flags", &[I32, I32], &[I32]),
    wasi("fd_prestat_get", &[I32, I32], &[I32]),
    wasi("fd_prestat_dir_name", &[I32, I32, I32], &[I32]),
    wasi("random_get", &[I32, I32], &[I32]),
    wasi("poll_oneoff", &[I32, I32, I32, I32], &[I32]),
    wasi("sched_yield", &[], &[I32]),
    wasi("proc_exit", &[I32], &[]),
];

/// WASI's errno values used here.
mod errno {
    pub const SUCCESS: i32 = 0;
    pub const BADF: i32 = 8;
    pub const FAULT: i32 = 21;
    pub const INVAL: i32 = 28;
}

/// The guest's memory, from inside a host function.
fn memory(caller: &mut Caller<'_, Host>) -> Option<Memory> {
    caller
        .get_export(crate::abi::MEMORY)
        .and_then(|export| export.into_memory())
}

/// Writes `bytes` at `at` in the guest's memory: `SUCCESS`, or `FAULT` outside it.
fn write(caller: &mut Caller<'_, Host>, at: i32, bytes: &[u8]) -> i32 {
    match memory(caller) {
        Some(memory)
            if memory
                .write(&mut *caller, at as u32 as usize, bytes)
                .is_ok() =>
        {
            errno::SUCCESS
        }
        _ => errno::FAULT,
    }
}

/// Reads `length` bytes at `at` of the guest's memory.
fn read(caller: &mut Caller<'_, Host>, at: u32, length: u32) -> Option<Vec<u8>> {
    let memory = memory(caller)?;
    let start = at as usize;
    memory
        .data(&*caller)
        .get(start..start.checked_add(length as usize)?)
        .map(<[u8]>::to_vec)
}

/// Adds the functions of [`FUNCTIONS`] to `linker`.
pub(crate) fn add(linker: &mut Linker<Host>) -> wasmtime::Result<()> {
    // No arguments, no environment: zero of each, zero bytes.
    for (count, get) in [
        ("args_sizes_get", "args_get"),
        ("environ_sizes_get", "environ_get"),
    ] {
        linker.func_wrap(
            MODULE,
            count,
            |mut caller: Caller<'_, Host>, n: i32, size: i32| match write(
                &mut caller,
                n,
                &0u32.to_le_bytes(),
            ) {
                errno::SUCCESS => write(&mut caller, size, &0u32.to_le_bytes()),
                fault => fault,
            },
        )?;
        linker.func_wrap(MODULE, get, |_: i32, _: i32| errno::SUCCESS)?;
    }
    linker.func_wrap(
        MODULE,
        "clock_time_get",
        |mut caller: Caller<'_, Host>, clock: i32, _precision: i64, out: i32| {
            let now = match clock {
                // Realtime.
                0 => SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
                // Monotonic.
                1 => monotonic_ns() as u64,
                _ => return errno::INVAL,
            };
            write(&mut caller, out, &now.to_le_bytes())
        },
    )?;
    linker.func_wrap(
        MODULE,
        "fd_write",
        |mut caller: Caller<'_, Host>, fd: i32, iovs: i32, count: i32, written: i32| {
            if !(1..=2).contains(&fd) {
                return errno::BADF;
            }
            let mut text = Vec::new();
            for index in 0..count.max(0) as u32 {
                let Some(entry) = read(&mut caller, iovs as u32 + index * 8, 8) else {
                    return errno::FAULT;
                };
                let at = u32::from_le_bytes([entry[0], entry[1], entry[2], entry[3]]);
                let length = u32::from_le_bytes([entry[4], entry[5], entry[6], entry[7]]);
                let Some(bytes) = read(&mut caller, at, length.min(64 * 1024)) else {
                    return errno::FAULT;
                };
                text.extend_from_slice(&bytes);
                if length > 64 * 1024 {
                    text.extend_from_slice(b"...");
                }
            }
            let total = u32::try_from(text.len()).unwrap_or(u32::MAX);
            let extension = caller.data().extension.clone();
            let line = String::from_utf8_lossy(&text);
            let line = line.trim_end();
            if fd == 1 {
                tracing::info!(extension = %extension, "guest stdout: {line}");
            } else {
                tracing::warn!(extension = %extension, "guest stderr: {line}");
            }
            write(&mut caller, written, &total.to_le_bytes())
        },
    )?;
    linker.func_wrap(
        MODULE,
        "random_get",
        |mut caller: Caller<'_, Host>, at: i32, length: i32| {
            let mut bytes = vec![0u8; length.max(0) as usize];
            if getrandom::fill(&mut bytes).is_err() {
                return errno::INVAL;
            }
            write(&mut caller, at, &bytes)
        },
    )?;
    linker.func_wrap(
        MODULE,
        "poll_oneoff",
        |mut caller: Caller<'_, Host>, subscriptions: i32, events: i32, count: i32, done: i32| {
            // Each subscription (48 bytes: userdata, then its tag at 8) gets its event (32
            // bytes: userdata, errno, type) at once: a clock is due, a file descriptor is
            // not one (`BADF`).
            let count = count.max(0) as u32;
            for index in 0..count {
                let Some(subscription) = read(&mut caller, subscriptions as u32 + index * 48, 48)
                else {
                    return errno::FAULT;
                };
                let tag = subscription[8];
                let mut event = [0u8; 32];
                event[..8].copy_from_slice(&subscription[..8]);
                let error = if tag == 0 { 0u16 } else { errno::BADF as u16 };
                event[8..10].copy_from_slice(&error.to_le_bytes());
                event[10] = tag;
                if write(&mut caller, events + (index * 32) as i32, &event) != errno::SUCCESS {
                    return errno::FAULT;
                }
            }
            write(&mut caller, done, &count.to_le_bytes())
        },
    )?;
    linker.func_wrap(MODULE, "sched_yield", || errno::SUCCESS)?;
    // The standard descriptors are character devices; no other descriptor exists, and none
    // is preopened (a runtime looks for preopened directories from 3 until `BADF`).
    linker.func_wrap(MODULE, "fd_close", |_: i32| errno::BADF)?;
    linker.func_wrap(
        MODULE,
        "fd_fdstat_get",
        |mut caller: Caller<'_, Host>, fd: i32, out: i32| {
            if !(0..=2).contains(&fd) {
                return errno::BADF;
            }
            // filetype (character device), flags, rights base, rights inheriting.
            let mut stat = [0u8; 24];
            stat[0] = 2;
            let rights: u64 = if fd == 0 { 1 << 1 } else { 1 << 6 };
            stat[8..16].copy_from_slice(&rights.to_le_bytes());
            write(&mut caller, out, &stat)
        },
    )?;
    linker.func_wrap(MODULE, "fd_fdstat_set_flags", |fd: i32, _: i32| {
        if (0..=2).contains(&fd) {
            errno::SUCCESS
        } else {
            errno::BADF
        }
    })?;
    linker.func_wrap(MODULE, "fd_prestat_get", |_: i32, _: i32| errno::BADF)?;
    linker.func_wrap(MODULE, "fd_prestat_dir_name", |_: i32, _: i32, _: i32| {
        errno::BADF
    })?;
    linker.func_wrap(MODULE, "proc_exit", |code: i32| -> wasmtime::Result<()> {
        Err(wasmtime::Error::msg(format!(
            "the guest exited (code {code})"
        )))
    })?;
    Ok(())
}
