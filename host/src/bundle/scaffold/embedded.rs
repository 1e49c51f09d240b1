//! The repository trees compiled into `gtc` for `gtc new` (the list is generated
//! by host/build/embed.rs: each `templates/<lang>/` and what they attach).

/// One file of an embedded tree.
pub struct EmbeddedFile {
    /// Relative to the tree's root, `/`-separated.
    pub path: &'static str,
    /// Written with mode 0755 (build scripts).
    pub executable: bool,
    pub contents: &'static [u8],
}

/// A directory of this repository, e.g. `templates/python` or `wit`.
pub struct EmbeddedTree {
    pub root: &'static str,
    pub files: &'static [EmbeddedFile],
}

impl EmbeddedTree {
    pub fn file(&self, path: &str) -> Option<&'static [u8]> {
        self.files
            .iter()
            .find(|file| file.path == path)
            .map(|file| file.contents)
    }
}

include!(concat!(env!("OUT_DIR"), "/embedded_trees.rs"));

/// The embedded tree rooted at `root`, if this build has it.
pub fn tree(root: &str) -> Option<&'static EmbeddedTree> {
    TREES.iter().find(|tree| tree.root == root)
}
