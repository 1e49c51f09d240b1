//! `gtc new`: writes a ready bundle (manifest, source, build script, README and the
//! WIT it binds) for a guest language, so an author has a secret-reading bundle
//! running in minutes without copying files out of this repository.
//!
//! The engine knows no language: a template is the directory `templates/<lang>/`
//! of this repository, embedded into the binary at build time (see
//! `host/build/embed.rs`), with a `template.toml` that says what else to copy in
//! (`[[attach]]`: a repository tree such as `wit/`, and the adaptation a
//! toolchain needs, e.g. binding an older WASI version). Adding a language is
//! adding its directory; nothing here changes. Text files of the template itself
//! get placeholders substituted (`{{bundle_id}}` …, see [`Placeholders`]);
//! attached trees are copied as they are, apart from their declared adaptation.

mod embedded;

use crate::secrets::scope::Segment;
use embedded::{EmbeddedFile, EmbeddedTree};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The languages `gtc new --lang` accepts (a template may still be missing from
/// this build; then `new` says so).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Language {
    Rust,
    Python,
    Js,
}

impl Language {
    /// The template's directory name under `templates/`.
    pub fn dir_name(self) -> &'static str {
        match self {
            Self::Rust => "rust",
            Self::Python => "python",
            Self::Js => "js",
        }
    }
}

/// Why `gtc new` wrote nothing (or not everything).
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error(
        "bundle name {name:?} is not a valid bundle id: {why} (lower-case letters, digits, \
         '.', '_' and '-'; at most 64 bytes)"
    )]
    InvalidName { name: String, why: String },
    #[error(
        "{} already exists and is not an empty directory; choose another NAME or --dir, \
         or remove it first (gtc new never overwrites)",
        .0.display()
    )]
    NotEmpty(PathBuf),
    #[error("the {0} template is not available in this build of gtc yet")]
    Unavailable(&'static str),
    #[error("the {lang} template is broken: {why}")]
    BrokenTemplate { lang: &'static str, why: String },
    #[error("cannot write {}: {source}", .path.display())]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ScaffoldError {
    /// Exit status 2 (bad input); a failed write is a runtime failure (1).
    pub fn is_configuration(&self) -> bool {
        !matches!(self, Self::Write { .. })
    }
}

/// `template.toml`: what a template copies besides its own files.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TemplateManifest {
    /// One line for `gtc new`'s summary, e.g. "Python (componentize-py 0.25.1)".
    description: String,
    #[serde(default)]
    attach: Vec<Attach>,
}

/// A repository tree copied into the new bundle.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Attach {
    /// The tree in this repository (embedded by host/build/embed.rs), e.g. `wit`.
    from: String,
    /// Where it goes in the new bundle, e.g. `wit`.
    to: String,
    /// Rewrite the WASI version the `.wit` files of the tree name (e.g. `0.2.12`)
    /// to this one, for a toolchain whose runtime is built against that WASI
    /// version (0.2.x versions are compatible: the host links any of them).
    #[serde(default)]
    wasi_version: Option<String>,
}

/// The values substituted in a template's own files and paths.
pub struct Placeholders {
    /// `{{bundle_id}}`: the bundle id, e.g. `hello-bot`.
    pub bundle_id: String,
    /// `{{bundle_id_snake}}`: the id with `-` and `.` as `_` (Rust crate and
    /// component file names, Python identifiers), e.g. `hello_bot`.
    pub bundle_id_snake: String,
    /// `{{gtc_version}}`: this binary's version.
    pub gtc_version: &'static str,
}

impl Placeholders {
    fn new(id: &Segment) -> Self {
        Self {
            bundle_id: id.as_str().to_string(),
            bundle_id_snake: id.as_str().replace(['-', '.'], "_"),
            gtc_version: env!("CARGO_PKG_VERSION"),
        }
    }

    fn apply(&self, text: &str) -> String {
        text.replace("{{bundle_id}}", &self.bundle_id)
            .replace("{{bundle_id_snake}}", &self.bundle_id_snake)
            .replace("{{gtc_version}}", self.gtc_version)
    }
}

/// What `gtc new` wrote.
#[derive(Debug)]
pub struct Created {
    pub dir: PathBuf,
    pub description: String,
    pub files: usize,
    /// The new bundle's README (build, seed, serve), to print.
    pub readme: String,
}

impl Created {
    /// The commands of the README's first code block (build, seed, serve).
    pub fn next_steps(&self) -> Vec<&str> {
        self.readme
            .lines()
            .skip_while(|line| !line.starts_with("```"))
            .skip(1)
            .take_while(|line| !line.starts_with("```"))
            .collect()
    }
}

/// Validates a bundle name the way a manifest's `id` is validated.
pub fn bundle_id(name: &str) -> Result<Segment, ScaffoldError> {
    Segment::parse(name).map_err(|e| ScaffoldError::InvalidName {
        name: name.to_string(),
        why: e.reason(),
    })
}

/// Writes a new bundle `name` for `lang` into `parent/name` (`parent` defaults to
/// the current directory). Refuses a bad name, a missing template and an existing
/// path that is not an empty directory before writing anything.
pub fn create(lang: Language, name: &str, parent: Option<&Path>) -> Result<Created, ScaffoldError> {
    let id = bundle_id(name)?;
    let (template, manifest) = template(lang)?;
    let dir = parent.unwrap_or(Path::new(".")).join(id.as_str());
    ensure_empty(&dir)?;
    let placeholders = Placeholders::new(&id);
    let files = render(lang, template, &manifest, &placeholders)?;
    let mut readme = String::new();
    for (path, contents, executable) in &files {
        if path == "README.md" {
            readme = String::from_utf8_lossy(contents).into_owned();
        }
        write_file(&dir.join(path), contents, *executable)?;
    }
    Ok(Created {
        dir,
        description: manifest.description,
        files: files.len(),
        readme,
    })
}

/// The embedded template of `lang` and its parsed `template.toml`.
fn template(lang: Language) -> Result<(&'static EmbeddedTree, TemplateManifest), ScaffoldError> {
    let root = format!("templates/{}", lang.dir_name());
    let broken = |why: String| ScaffoldError::BrokenTemplate {
        lang: lang.dir_name(),
        why,
    };
    let tree = embedded::tree(&root).ok_or(ScaffoldError::Unavailable(lang.dir_name()))?;
    let text = tree
        .file("template.toml")
        .ok_or_else(|| broken("it has no template.toml".into()))?;
    let text =
        std::str::from_utf8(text).map_err(|_| broken("template.toml is not UTF-8".into()))?;
    let manifest: TemplateManifest =
        toml::from_str(text).map_err(|e| broken(format!("template.toml: {e}")))?;
    Ok((tree, manifest))
}

/// The files of the new bundle: (relative path, contents, executable).
type Rendered = Vec<(String, Vec<u8>, bool)>;

fn render(
    lang: Language,
    template: &EmbeddedTree,
    manifest: &TemplateManifest,
    placeholders: &Placeholders,
) -> Result<Rendered, ScaffoldError> {
    let broken = |why: String| ScaffoldError::BrokenTemplate {
        lang: lang.dir_name(),
        why,
    };
    let mut files = Vec::new();
    for file in template.files.iter().filter(|f| f.path != "template.toml") {
        let contents = match std::str::from_utf8(file.contents) {
            Ok(text) => placeholders.apply(text).into_bytes(),
            Err(_) => file.contents.to_vec(),
        };
        files.push((placeholders.apply(file.path), contents, file.executable));
    }
    for attach in &manifest.attach {
        let tree = embedded::tree(&attach.from).ok_or_else(|| {
            broken(format!(
                "the attached tree {:?} is not embedded",
                attach.from
            ))
        })?;
        let rewrite = match &attach.wasi_version {
            Some(version) => Some(wasi_rewrite(tree, version).map_err(broken)?),
            None => None,
        };
        for file in tree.files {
            let contents = match (&rewrite, file.path.ends_with(".wit")) {
                (Some((from, to)), true) => rewrite_wasi(file, from, to),
                _ => file.contents.to_vec(),
            };
            files.push((
                format!("{}/{}", attach.to.trim_end_matches('/'), file.path),
                contents,
                file.executable,
            ));
        }
    }
    Ok(files)
}

/// The WASI version a WIT tree binds (from `deps/io.wit`'s `package wasi:io@X;`)
/// and the version to bind instead.
fn wasi_rewrite(tree: &EmbeddedTree, to: &str) -> Result<(String, String), String> {
    let io = tree
        .files
        .iter()
        .find_map(|file| {
            let text = std::str::from_utf8(file.contents).ok()?;
            text.lines()
                .find_map(|line| line.trim().strip_prefix("package wasi:io@"))
                .map(|rest| rest.trim_end_matches(';').trim().to_string())
        })
        .ok_or("wasi_version is set, but the tree has no `package wasi:io@…;`")?;
    Ok((io, to.to_string()))
}

/// `file` with every `@<from>` (package and interface versions) and
/// `version = <from>` (feature gates) naming `to` instead.
fn rewrite_wasi(file: &EmbeddedFile, from: &str, to: &str) -> Vec<u8> {
    String::from_utf8_lossy(file.contents)
        .replace(&format!("@{from}"), &format!("@{to}"))
        .replace(&format!("version = {from}"), &format!("version = {to}"))
        .into_bytes()
}

/// Refuses anything at `dir` but nothing or an empty directory.
fn ensure_empty(dir: &Path) -> Result<(), ScaffoldError> {
    match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(ScaffoldError::Write {
            path: dir.to_path_buf(),
            source,
        }),
        Ok(meta) if meta.is_dir() => {
            let empty = std::fs::read_dir(dir)
                .map_err(|source| ScaffoldError::Write {
                    path: dir.to_path_buf(),
                    source,
                })?
                .next()
                .is_none();
            if empty {
                Ok(())
            } else {
                Err(ScaffoldError::NotEmpty(dir.to_path_buf()))
            }
        }
        Ok(_) => Err(ScaffoldError::NotEmpty(dir.to_path_buf())),
    }
}

fn write_file(path: &Path, contents: &[u8], executable: bool) -> Result<(), ScaffoldError> {
    let failed = |source| ScaffoldError::Write {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(failed)?;
    }
    std::fs::write(path, contents).map_err(failed)?;
    #[cfg(unix)]
    if executable {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(failed)?;
    }
    #[cfg(not(unix))]
    let _ = executable;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Language; 3] = [Language::Rust, Language::Python, Language::Js];

    fn placeholders() -> Placeholders {
        Placeholders::new(&Segment::parse("my-bot.v2").unwrap())
    }

    #[test]
    fn every_embedded_template_renders_without_leftover_placeholders() {
        let mut rendered = 0;
        for lang in ALL {
            let (tree, manifest) = match template(lang) {
                Ok(found) => found,
                Err(ScaffoldError::Unavailable(_)) => continue,
                Err(e) => panic!("{e}"),
            };
            let files = render(lang, tree, &manifest, &placeholders()).unwrap();
            for (path, contents, _) in &files {
                let text = String::from_utf8_lossy(contents);
                for key in ["{{bundle_id", "{{gtc_version"] {
                    assert!(!text.contains(key) && !path.contains(key), "{path}: {key}");
                }
            }
            for needed in ["bundle.toml", "README.md", "build.sh", "wit/secrets.wit"] {
                assert!(
                    files
                        .iter()
                        .any(|(path, _, _)| path == needed || path.ends_with(&format!("/{needed}"))),
                    "{lang:?} lacks {needed}"
                );
            }
            rendered += 1;
        }
        assert_eq!(rendered, ALL.len(), "every language has its template");
        // Every template directory is reachable from `--lang`.
        for tree in embedded::TREES {
            if let Some(dir) = tree.root.strip_prefix("templates/") {
                assert!(
                    ALL.iter().any(|lang| lang.dir_name() == dir),
                    "templates/{dir} has no --lang value"
                );
            }
        }
    }

    #[test]
    fn snake_case_placeholder_is_an_identifier() {
        let p = placeholders();
        assert_eq!(
            p.apply("{{bundle_id}} {{bundle_id_snake}}"),
            "my-bot.v2 my_bot_v2"
        );
        assert_eq!(p.apply("{{secret:NAME}}"), "{{secret:NAME}}");
    }

    #[test]
    fn wasi_versions_are_rewritten_only_where_asked() {
        let (tree, manifest) = template(Language::Js).unwrap();
        let files = render(Language::Js, tree, &manifest, &placeholders()).unwrap();
        let wit = embedded::tree("wit").unwrap();
        let (project, _) = wasi_rewrite(wit, "x").unwrap();
        let target = manifest
            .attach
            .iter()
            .find_map(|a| a.wasi_version.clone())
            .unwrap();
        let http = files
            .iter()
            .find(|(path, _, _)| path == "wit/deps/http.wit")
            .unwrap();
        let text = String::from_utf8_lossy(&http.1);
        assert!(!text.contains(&format!("@{project}")), "{project} left");
        assert!(text.contains(&format!("package wasi:http@{target};")));
        // The greentic package keeps its own version.
        let secrets = files
            .iter()
            .find(|(path, _, _)| path == "wit/secrets.wit")
            .unwrap();
        let text = String::from_utf8_lossy(&secrets.1);
        assert!(text.contains("package greentic:secrets@1.1.0;"));
        assert!(text.contains(&format!("wasi:http/proxy@{target}")));
    }

    #[test]
    fn bad_names_are_refused_naming_the_problem() {
        for name in ["Hello", "", "../x", "a/b", "-x", &"a".repeat(65)] {
            let e = bundle_id(name).unwrap_err();
            assert!(e.is_configuration());
            assert!(e.to_string().contains("not a valid bundle id"), "{e}");
        }
        assert!(bundle_id("hello-bot.v2").is_ok());
    }

    #[test]
    fn an_existing_non_empty_path_is_refused() {
        let root = tempfile::tempdir().unwrap();
        assert!(ensure_empty(&root.path().join("missing")).is_ok());
        assert!(ensure_empty(root.path()).is_ok());
        std::fs::write(root.path().join("file"), b"x").unwrap();
        let e = ensure_empty(root.path()).unwrap_err();
        assert!(matches!(e, ScaffoldError::NotEmpty(_)), "{e}");
        let e = ensure_empty(&root.path().join("file")).unwrap_err();
        assert!(matches!(e, ScaffoldError::NotEmpty(_)), "{e}");
    }
}
