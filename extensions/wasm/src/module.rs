//! The module: read, compiled once per process (the same bytes are never compiled twice,
//! across extensions, cores and reloads), and checked against the guest ABI before anything
//! runs: its imports are among the host's, its exports are what the capabilities it is said
//! to provide need.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use otap_df_core::capability::CapabilityId;
use wasmtime::{Engine, ExternType, FuncType, Module, ValType};

use crate::abi;

/// The engine every instance runs on: fuel metering on (each call's budget), everything
/// else at wasmtime's defaults. An engine that cannot be built is an error of every module,
/// never an engine without limits.
pub(crate) fn engine() -> Result<&'static Engine, String> {
    static ENGINE: OnceLock<Result<Engine, String>> = OnceLock::new();
    ENGINE
        .get_or_init(|| {
            let mut config = wasmtime::Config::new();
            config.consume_fuel(true);
            Engine::new(&config)
                .map_err(|e| format!("the WebAssembly engine cannot start: {}", error_chain(&e)))
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Modules compiled in this process, by their bytes; the oldest dropped past
/// [`COMPILED_KEPT`].
static COMPILED: Mutex<VecDeque<(Arc<[u8]>, Module)>> = Mutex::new(VecDeque::new());

/// How many compiled modules the process keeps (a reload to a new module adds one).
const COMPILED_KEPT: usize = 16;

/// The module at `path`, compiled (or found compiled), and checked: its imports are the
/// host's, and it exports what each of `capabilities` needs. The error says what is wrong
/// and what would do.
pub(crate) fn load(
    path: &Path,
    capabilities: &[CapabilityId],
    cache: Option<&Path>,
) -> Result<Module, String> {
    let bytes = std::fs::read(path)
        .map_err(|e| format!("cannot read the module `{}`: {e}", path.display()))?;
    let module = compiled(path, bytes, cache)?;
    check(&module, capabilities)?;
    Ok(module)
}

/// `bytes` compiled, once per process: found in memory, else in `cache` (a restart's), else
/// compiled and written there.
fn compiled(path: &Path, bytes: Vec<u8>, cache: Option<&Path>) -> Result<Module, String> {
    let mut kept = COMPILED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some((_, module)) = kept.iter().find(|(known, _)| known[..] == bytes[..]) {
        return Ok(module.clone());
    }
    let cached = cache.map(|dir| dir.join(cache_name(&bytes)));
    if let Some(module) = cached.as_deref().and_then(from_cache) {
        tracing::info!(module = %path.display(), "WebAssembly module loaded from the compile cache");
        keep(&mut kept, bytes, &module);
        return Ok(module);
    }
    let text = path.extension().is_some_and(|e| e == "wat");
    let started = std::time::Instant::now();
    let module = if text {
        let text = std::str::from_utf8(&bytes)
            .map_err(|e| format!("the module `{}` is not WAT text: {e}", path.display()))?;
        Module::new(engine()?, text)
    } else {
        Module::from_binary(engine()?, &bytes)
    }
    .map_err(|e| {
        format!(
            "the module `{}` is not a valid WebAssembly {}: {}",
            path.display(),
            if text { "text (WAT) module" } else { "module" },
            error_chain(&e)
        )
    })?;
    tracing::info!(
        module = %path.display(),
        "WebAssembly module compiled in {:?}",
        started.elapsed()
    );
    if let Some(file) = &cached {
        to_cache(&module, file);
    }
    keep(&mut kept, bytes, &module);
    Ok(module)
}

/// Keeps `module` (compiled from `bytes`) for the process, the oldest dropped past
/// [`COMPILED_KEPT`].
fn keep(kept: &mut VecDeque<(Arc<[u8]>, Module)>, bytes: Vec<u8>, module: &Module) {
    if kept.len() == COMPILED_KEPT {
        kept.pop_front();
    }
    kept.push_back((bytes.into(), module.clone()));
}

/// The cache file of a module: its SHA-256 and the engine's compatibility (wasmtime's
/// version and settings), so that another build never loads it.
fn cache_name(bytes: &[u8]) -> String {
    use sha2::Digest;
    use std::hash::{Hash, Hasher};
    let digest = sha2::Sha256::digest(bytes);
    let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
    if let Ok(engine) = engine() {
        engine
            .precompile_compatibility_hash()
            .hash(&mut engine_hash);
    }
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}-{:016x}.cwasm", engine_hash.finish())
}

/// The module compiled by an earlier run, when `file` holds one this engine can load.
fn from_cache(file: &Path) -> Option<Module> {
    // Read whole rather than mapped: a mapped file that someone truncates later takes the
    // process down (SIGBUS); a read copy cannot change under the engine.
    let bytes = std::fs::read(file).ok()?;
    // SAFETY: `deserialize` runs the bytes' machine code when the module is called, so they
    // must be what this process's engine wrote: the cache folder is the user's own
    // (documented), the name binds the module's SHA-256 and the engine's compatibility hash,
    // and wasmtime checks the header and version before loading.
    #[allow(unsafe_code)]
    let loaded = unsafe { Module::deserialize(engine().ok()?, bytes) };
    match loaded {
        Ok(module) => Some(module),
        Err(error) => {
            tracing::warn!(file = %file.display(), "a cached module is unusable, compiling again: {}", error_chain(&error));
            None
        }
    }
}

/// Writes `module` compiled into `file` (a temporary file renamed into place, so that a
/// reader never sees half of one); a failure only costs the next start a compilation.
fn to_cache(module: &Module, file: &Path) {
    let write = || -> std::io::Result<()> {
        let bytes = module
            .serialize()
            .map_err(|e| std::io::Error::other(error_chain(&e)))?;
        if let Some(dir) = file.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let partial = file.with_extension(format!("partial-{}", std::process::id()));
        std::fs::write(&partial, bytes)?;
        std::fs::rename(&partial, file)
    };
    if let Err(error) = write() {
        tracing::debug!(file = %file.display(), "the compiled module is not cached: {error}");
    }
}

/// The host functions of a granted store that `module` imports.
pub(crate) fn granted_imports(module: &Module) -> Vec<String> {
    module
        .imports()
        .filter(|import| {
            abi::GRANTED_STORE_FUNCTIONS
                .iter()
                .any(|f| f.module == import.module() && f.name == import.name())
        })
        .map(|import| format!("`{}.{}`", import.module(), import.name()))
        .collect()
}

/// wasmtime's error and its causes, on one line.
pub(crate) fn error_chain(error: &wasmtime::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1) {
        text.push_str(": ");
        text.push_str(&cause.to_string());
    }
    text
}

/// Imports the host does not offer, and exports the capabilities need that are missing or
/// of the wrong type.
fn check(module: &Module, capabilities: &[CapabilityId]) -> Result<(), String> {
    for import in module.imports() {
        let offered = abi::HOST_FUNCTIONS
            .iter()
            .chain(abi::GRANTED_STORE_FUNCTIONS)
            .chain(crate::wasi::FUNCTIONS)
            .find(|f| f.module == import.module() && f.name == import.name());
        let fits = match (offered, import.ty()) {
            (Some(function), ExternType::Func(ty)) => {
                same_type(&ty, function.params, function.results)
            }
            _ => false,
        };
        if !fits {
            return Err(format!(
                "the module imports `{}.{}` ({}), which the host does not offer; the host \
                 offers only {}; with a `key_value_store` bound in the extension's \
                 `capabilities:`, {}; and of WASI preview 1 what a language runtime needs to \
                 start (no arguments, environment, files or network): {}",
                import.module(),
                import.name(),
                describe(&import.ty()),
                abi::HOST_FUNCTIONS
                    .iter()
                    .map(abi::Function::signature)
                    .collect::<Vec<_>>()
                    .join(", "),
                abi::GRANTED_STORE_FUNCTIONS
                    .iter()
                    .map(abi::Function::signature)
                    .collect::<Vec<_>>()
                    .join(", "),
                crate::wasi::FUNCTIONS
                    .iter()
                    .map(|f| f.name)
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    let needed = abi::COMMON_EXPORTS.iter().chain(
        capabilities
            .iter()
            .flat_map(|capability| abi::exports_of(*capability).iter()),
    );
    let mut missing = Vec::new();
    for function in needed {
        let fits = match module.get_export(function.name) {
            Some(ExternType::Func(ty)) => same_type(&ty, function.params, function.results),
            _ => false,
        };
        if !fits {
            missing.push(function.signature());
        }
    }
    if !matches!(module.get_export(abi::MEMORY), Some(ExternType::Memory(_))) {
        missing.push(format!("memory `{}`", abi::MEMORY));
    }
    if !missing.is_empty() {
        let provides: Vec<&str> = capabilities.iter().map(|c| c.name()).collect();
        return Err(format!(
            "the module does not export what it must to provide {} (ABI version {}): missing \
             or of another type: {}",
            provides.join(", "),
            abi::VERSION,
            missing.join(", ")
        ));
    }
    Ok(())
}

fn same_type(ty: &FuncType, params: &[ValType], results: &[ValType]) -> bool {
    let same = |a: &mut dyn ExactSizeIterator<Item = ValType>, b: &[ValType]| {
        a.len() == b.len() && a.zip(b).all(|(x, y)| ValType::eq(&x, y))
    };
    same(&mut ty.params(), params) && same(&mut ty.results(), results)
}

fn describe(ty: &ExternType) -> String {
    match ty {
        ExternType::Func(ty) => {
            let types = |types: &mut dyn Iterator<Item = ValType>| {
                types.map(|t| t.to_string()).collect::<Vec<_>>().join(", ")
            };
            let results = types(&mut ty.results());
            let results = if results.is_empty() {
                String::new()
            } else {
                format!(" -> {results}")
            };
            format!("a function ({}){results}", types(&mut ty.params()))
        }
        ExternType::Memory(_) => "a memory".to_owned(),
        ExternType::Table(_) => "a table".to_owned(),
        ExternType::Global(_) => "a global".to_owned(),
        ExternType::Tag(_) => "a tag".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_compiled_module_is_kept_by_its_hash_and_a_broken_file_is_compiled_again() {
        let dir = std::env::temp_dir().join(format!("otap-df-wasm-cache-{}", std::process::id()));
        let bytes = b"(module (func (export \"f\") (result i32) (i32.const 7)))".to_vec();
        let text = std::str::from_utf8(&bytes).unwrap();
        let module = Module::new(engine().unwrap(), text).unwrap();
        let file = dir.join(cache_name(&bytes));
        assert!(
            file.file_name()
                .unwrap()
                .to_string_lossy()
                .ends_with(".cwasm")
        );
        assert!(from_cache(&file).is_none(), "nothing cached yet");
        to_cache(&module, &file);
        let loaded = from_cache(&file).expect("loaded from the file");
        let mut store = wasmtime::Store::new(engine().unwrap(), ());
        store.set_fuel(1_000).unwrap();
        let instance = wasmtime::Instance::new(&mut store, &loaded, &[]).unwrap();
        let f = instance.get_typed_func::<(), i32>(&mut store, "f").unwrap();
        assert_eq!(f.call(&mut store, ()).unwrap(), 7, "the cached code runs");
        drop((store, loaded));
        // Another module's name differs; a file that is not a compiled module is refused
        // (and would be compiled and written again).
        assert_ne!(cache_name(b"(module)"), cache_name(&bytes));
        std::fs::write(&file, b"not compiled code").unwrap();
        assert!(from_cache(&file).is_none());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
