//! Is a bundle's component file something this host can run? Checked before
//! and after compiling, so that an operator gets a diagnosis and a fix ("this
//! is a core module: run `wasm-tools component new`") instead of a parser error,
//! and so that a component importing something the host does not provide is
//! refused with the list of what it does provide.
//!
//! [`HOST_INTERFACES`] is the one place that list is written down; the runtime
//! links exactly these (wasmtime-wasi's WASI 0.2 set, wasi:http's client side,
//! and `greentic:secrets`), and the tests check every guest's imports against it.

use std::path::{Path, PathBuf};

/// Every interface the host links into a component, with the version family it
/// accepts. Filesystem and sockets are linked (the standard WASI 0.2 set) but
/// the sandbox gives a guest no directory and refuses every socket.
pub const HOST_INTERFACES: &[(&str, &str)] = &[
    ("greentic:secrets/secrets", "1.0"),
    ("greentic:secrets/secrets", "1.1"),
    ("greentic:secrets/sealed", "1.1"),
    ("greentic:secrets-store/secrets-store", "1.0"),
    ("greentic:secrets-store/secrets-store", "1.1"),
    ("wasi:http/outgoing-handler", "0.2"),
    ("wasi:http/types", "0.2"),
    ("wasi:cli/environment", "0.2"),
    ("wasi:cli/exit", "0.2"),
    ("wasi:cli/stdin", "0.2"),
    ("wasi:cli/stdout", "0.2"),
    ("wasi:cli/stderr", "0.2"),
    ("wasi:cli/terminal-input", "0.2"),
    ("wasi:cli/terminal-output", "0.2"),
    ("wasi:cli/terminal-stdin", "0.2"),
    ("wasi:cli/terminal-stdout", "0.2"),
    ("wasi:cli/terminal-stderr", "0.2"),
    ("wasi:clocks/wall-clock", "0.2"),
    ("wasi:clocks/monotonic-clock", "0.2"),
    ("wasi:io/error", "0.2"),
    ("wasi:io/poll", "0.2"),
    ("wasi:io/streams", "0.2"),
    ("wasi:random/random", "0.2"),
    ("wasi:random/insecure", "0.2"),
    ("wasi:random/insecure-seed", "0.2"),
    ("wasi:filesystem/types", "0.2"),
    ("wasi:filesystem/preopens", "0.2"),
    ("wasi:sockets/network", "0.2"),
    ("wasi:sockets/instance-network", "0.2"),
    ("wasi:sockets/tcp", "0.2"),
    ("wasi:sockets/tcp-create-socket", "0.2"),
    ("wasi:sockets/udp", "0.2"),
    ("wasi:sockets/udp-create-socket", "0.2"),
    ("wasi:sockets/ip-name-lookup", "0.2"),
];

/// What a component must export.
pub const REQUIRED_EXPORT: &str = "wasi:http/incoming-handler@0.2.x";

/// How to turn something else into a component for this host.
const BUILD_HINT: &str = "build the bundle for the wasm32-wasip2 target \
     (`cargo build --target wasm32-wasip2`), or wrap a core module with \
     `wasm-tools component new` (with the WASI preview1 adapter for wasm32-wasip1 builds)";

/// The interfaces the host provides, for messages: `name@family.x, ...`.
pub fn provided_list() -> String {
    HOST_INTERFACES
        .iter()
        .map(|(name, family)| format!("{name}@{family}.x"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether the host provides an import named `name` (`pkg:ns/iface@version`).
pub fn provides(import: &str) -> bool {
    let (name, version) = import.split_once('@').unwrap_or((import, ""));
    HOST_INTERFACES.iter().any(|(provided, family)| {
        *provided == name
            && version
                .strip_prefix(family)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
    })
}

/// What the host does with one import of a component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImportStatus {
    /// Linked and usable.
    Provided,
    /// Linked so that the component instantiates, but the sandbox refuses every
    /// use; the text says what to use instead.
    Sandboxed(&'static str),
    /// Not linked: the component cannot run here; the text says what to do.
    Missing(String),
}

/// How the host treats the import `name` (`pkg:ns/iface@version`).
pub fn classify(import: &str) -> ImportStatus {
    let (name, version) = import.split_once('@').unwrap_or((import, ""));
    if provides(import) {
        return if name.starts_with("wasi:sockets/") {
            ImportStatus::Sandboxed(
                "linked, but every socket is refused in the sandbox: make HTTP calls with \
                 wasi:http/outgoing-handler to hosts in the manifest's [egress] allow list",
            )
        } else if name.starts_with("wasi:filesystem/") {
            ImportStatus::Sandboxed(
                "linked, but the sandbox has no directory (every open fails): keep \
                 configuration in secrets and state outside the bundle",
            )
        } else {
            ImportStatus::Provided
        };
    }
    let families: Vec<&str> = HOST_INTERFACES
        .iter()
        .filter(|(provided, _)| *provided == name)
        .map(|(_, family)| *family)
        .collect();
    let package = name.split('/').next().unwrap_or(name);
    let hint = if !families.is_empty() {
        let have: Vec<String> = families.iter().map(|f| format!("{name}@{f}.x")).collect();
        format!(
            "version {} is not one this host can satisfy (it provides {}): rebuild against \
             the WIT in the project's wit/ directory",
            if version.is_empty() {
                "(none)"
            } else {
                version
            },
            have.join(" and ")
        )
    } else if HOST_INTERFACES
        .iter()
        .any(|(provided, _)| provided.split('/').next() == Some(package))
    {
        format!(
            "{package} has no interface {name} here; the host provides {}",
            HOST_INTERFACES
                .iter()
                .filter(|(provided, _)| provided.starts_with(&format!("{package}/")))
                .map(|(provided, family)| format!("{provided}@{family}.x"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else {
        format!(
            "no interface of package {package} is provided here: remove the dependency \
             (configuration and credentials come from greentic:secrets/secrets.get, \
             outgoing calls from wasi:http/outgoing-handler)"
        )
    };
    ImportStatus::Missing(hint)
}

/// The imports the sandbox links but refuses, grouped by what to do instead: one
/// line per kind (sockets, files), not one per interface.
pub fn sandboxed(imports: &[String]) -> Vec<(&'static str, Vec<&str>)> {
    let mut groups: Vec<(&'static str, Vec<&str>)> = Vec::new();
    for import in imports {
        if let ImportStatus::Sandboxed(why) = classify(import) {
            match groups.iter_mut().find(|(w, _)| *w == why) {
                Some((_, names)) => names.push(import),
                None => groups.push((why, vec![import])),
            }
        }
    }
    groups
}

/// The component's imports and exports, by name.
pub fn interfaces(
    engine: &wasmtime::Engine,
    component: &wasmtime::component::Component,
) -> (Vec<String>, Vec<String>) {
    let ty = component.component_type();
    let imports = ty
        .imports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    let exports = ty
        .exports(engine)
        .map(|(name, _)| name.to_string())
        .collect();
    (imports, exports)
}

/// Whether `export` satisfies [`REQUIRED_EXPORT`].
pub fn is_required_export(export: &str) -> bool {
    export
        .strip_prefix("wasi:http/incoming-handler@0.2")
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ComponentFileError {
    #[error(
        "component file {path} does not exist — check `component` in bundle.toml (it is relative to the manifest)"
    )]
    Missing { path: PathBuf },
    #[error(
        "component {path} is a directory, not a file — `component` in bundle.toml must name the .wasm file"
    )]
    Directory { path: PathBuf },
    #[error("cannot read component {path}: {reason}")]
    Unreadable { path: PathBuf, reason: String },
    #[error("component file {path} is empty — {BUILD_HINT}")]
    Empty { path: PathBuf },
    #[error("{path} is not WebAssembly (no \\0asm header) — {BUILD_HINT}")]
    NotWasm { path: PathBuf },
    #[error("{path} is a core WebAssembly module, not a component — {BUILD_HINT}")]
    CoreModule { path: PathBuf },
    #[error(
        "{path} imports {} that this host does not provide; the host provides: {} \
         (and the component must export {REQUIRED_EXPORT})",
        .missing.join(", "),
        provided_list()
    )]
    Incompatible { path: PathBuf, missing: Vec<String> },
    #[error(
        "{path} cannot be linked: {reason}; the host provides: {} (and the component must export {REQUIRED_EXPORT})",
        provided_list()
    )]
    Unlinkable { path: PathBuf, reason: String },
}

/// Core module: `\0asm` + version 1 (`01 00 00 00`). A component has version 0x0d
/// and layer 1 (`0d 00 01 00`).
const MAGIC: &[u8; 4] = b"\0asm";
const CORE_VERSION: [u8; 4] = [1, 0, 0, 0];

/// Looks at the file before it is compiled: missing, a directory, empty, not
/// WebAssembly, a core module. The text format (WAT) is left to the compiler.
pub fn check_file(path: &Path) -> Result<(), ComponentFileError> {
    let owned = || path.to_path_buf();
    let metadata = match std::fs::metadata(path) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            return Err(ComponentFileError::Missing { path: owned() });
        }
        Err(error) => {
            return Err(ComponentFileError::Unreadable {
                path: owned(),
                reason: error.to_string(),
            });
        }
    };
    if metadata.is_dir() {
        return Err(ComponentFileError::Directory { path: owned() });
    }
    let mut head = [0u8; 8];
    let read = {
        use std::io::Read as _;
        let mut file = std::fs::File::open(path).map_err(|e| ComponentFileError::Unreadable {
            path: owned(),
            reason: e.to_string(),
        })?;
        let mut filled = 0;
        while filled < head.len() {
            match file.read(&mut head[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    return Err(ComponentFileError::Unreadable {
                        path: owned(),
                        reason: e.to_string(),
                    });
                }
            }
        }
        filled
    };
    if read == 0 {
        return Err(ComponentFileError::Empty { path: owned() });
    }
    if head.starts_with(MAGIC) {
        if read == 8 && head[4..8] == CORE_VERSION {
            return Err(ComponentFileError::CoreModule { path: owned() });
        }
        return Ok(());
    }
    // The text format starts with `(` (after whitespace or comments): let the
    // compiler judge it. Anything else is not WebAssembly.
    let text_start = head[..read]
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'(' || *b == b';');
    if text_start {
        Ok(())
    } else {
        Err(ComponentFileError::NotWasm { path: owned() })
    }
}

/// The imports (from [`interfaces`]) that the host does not provide.
pub fn missing_imports(imports: &[String]) -> Vec<String> {
    imports
        .iter()
        .filter(|name| !provides(name))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provides_matches_name_and_version_family() {
        assert!(provides("wasi:http/types@0.2.6"));
        assert!(provides("wasi:http/types@0.2.0"));
        assert!(provides("greentic:secrets/secrets@1.0.0"));
        assert!(!provides("wasi:http/types@0.3.0"));
        assert!(!provides("wasi:http/types@0.20.0"));
        assert!(!provides("wasi:keyvalue/store@0.2.0"));
        assert!(!provides("greentic:secrets/secrets@2.0.0"));
        assert!(provides("greentic:secrets/secrets@1.1.0"));
        assert!(provides("greentic:secrets/sealed@1.1.0"));
        assert!(!provides("greentic:secrets/sealed@1.0.0"));
        assert!(!provides("greentic:secrets/secrets@1.2.0"));
        assert!(provides("greentic:secrets-store/secrets-store@1.0.0"));
        assert!(provides("greentic:secrets-store/secrets-store@1.1.0"));
        assert!(!provides("greentic:secrets-store/secrets-store@1.2.0"));
        assert!(!provides("wasi:http/types"));
        let list = provided_list();
        assert!(list.contains("greentic:secrets/secrets@1.0.x"), "{list}");
        assert!(list.contains("wasi:http/outgoing-handler@0.2.x"), "{list}");
    }

    #[test]
    fn every_built_guest_imports_only_what_the_list_names() {
        // The guests link (the integration tests serve them); their imports
        // must all be on the list too, so the list is never narrower than what
        // the linker gives.
        // Every guest the guests workspace builds (its members but the SDK), so a
        // new guest is covered without editing this list.
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guests/Cargo.toml");
        let workspace: toml::Value =
            toml::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
        let guests: Vec<String> = workspace["workspace"]["members"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|member| member.as_str())
            .filter(|member| *member != "sdk")
            .map(|member| member.replace('-', "_"))
            .collect();
        assert!(guests.len() >= 8, "{guests:?}");
        let engine = wasmtime::Engine::default();
        for guest in &guests {
            let path = Path::new(env!("GTC_GUESTS_DIR")).join(format!("{guest}.wasm"));
            check_file(&path).unwrap_or_else(|e| panic!("{guest}: {e}"));
            let component = wasmtime::component::Component::from_file(&engine, &path).unwrap();
            let (imports, _) = interfaces(&engine, &component);
            assert_eq!(missing_imports(&imports), Vec::<String>::new(), "{guest}");
        }
    }

    #[test]
    fn each_guest_imports_the_package_version_it_was_built_against() {
        // The compatibility proof rests on these imports: legacy-v1 is built
        // against greentic:secrets@1.0.0 (the integration tests serve it next to
        // webchat-bot), the SDK's guests against 1.1.0 (webchat-bot uses `sealed`),
        // greentic-component and greentic-component-v1-1 against Greentic's
        // secrets-store (1.0.0 and 1.1.0) only.
        let engine = wasmtime::Engine::default();
        let imports = |guest: &str| -> Vec<String> {
            let path = Path::new(env!("GTC_GUESTS_DIR")).join(format!("{guest}.wasm"));
            let component = wasmtime::component::Component::from_file(&engine, &path).unwrap();
            component
                .component_type()
                .imports(&engine)
                .map(|(name, _)| name.to_string())
                .filter(|name| name.starts_with("greentic:"))
                .collect()
        };
        assert_eq!(imports("legacy_v1"), ["greentic:secrets/secrets@1.0.0"]);
        assert_eq!(imports("probe"), ["greentic:secrets/secrets@1.1.0"]);
        assert_eq!(
            imports("greentic_component"),
            ["greentic:secrets-store/secrets-store@1.0.0"]
        );
        assert_eq!(
            imports("greentic_component_v1_1"),
            ["greentic:secrets-store/secrets-store@1.1.0"]
        );
        assert_eq!(imports("hello"), Vec::<String>::new());
        let webchat = imports("webchat_bot");
        assert!(
            webchat.contains(&"greentic:secrets/sealed@1.1.0".to_string()),
            "{webchat:?}"
        );
        assert!(
            !webchat.iter().any(|name| name.ends_with("@1.0.0")),
            "{webchat:?}"
        );
    }

    #[test]
    fn files_that_are_not_components_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, bytes: &[u8]| {
            let path = dir.path().join(name);
            std::fs::write(&path, bytes).unwrap();
            path
        };
        let missing = dir.path().join("nope.wasm");
        assert!(matches!(
            check_file(&missing),
            Err(ComponentFileError::Missing { .. })
        ));
        assert!(matches!(
            check_file(dir.path()),
            Err(ComponentFileError::Directory { .. })
        ));
        assert!(matches!(
            check_file(&write("empty.wasm", b"")),
            Err(ComponentFileError::Empty { .. })
        ));
        assert!(matches!(
            check_file(&write(
                "random.wasm",
                &[0x7f, 0x45, 0x4c, 0x46, 2, 1, 1, 0, 9]
            )),
            Err(ComponentFileError::NotWasm { .. })
        ));
        let core = check_file(&write("core.wasm", b"\0asm\x01\0\0\0")).unwrap_err();
        assert!(
            core.to_string().contains("wasm-tools component new")
                && core.to_string().contains("wasm32-wasip2"),
            "{core}"
        );
        assert_eq!(check_file(&write("c.wasm", b"\0asm\x0d\0\x01\0")), Ok(()));
        assert_eq!(check_file(&write("c.wat", b"  (component)")), Ok(()));
    }
}
