//! The one type that holds secret bytes inside the host.
//!
//! Values are shared (the cache and an in-flight request may hold the same value)
//! and wiped from memory when the last holder drops them. `Debug` never shows the
//! bytes, so a value cannot reach a log line, an error or a panic message by accident.

use std::fmt;
use std::sync::Arc;
use zeroize::Zeroizing;

/// Secret bytes: cheap to clone, zeroized on drop, redacted in `Debug`.
#[derive(Clone)]
pub struct SecretBytes(Arc<Zeroizing<Vec<u8>>>);

impl SecretBytes {
    /// Takes ownership of `bytes`; they are zeroized when the last clone drops.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Arc::new(Zeroizing::new(bytes)))
    }

    /// The value. Callers copy it only into the guest or into a cipher.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Zeroizing<Vec<u8>>> for SecretBytes {
    fn from(bytes: Zeroizing<Vec<u8>>) -> Self {
        Self(Arc::new(bytes))
    }
}

impl fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretBytes([redacted])")
    }
}

impl PartialEq for SecretBytes {
    /// Constant-time in the length of the shorter value; used by tests and rotation
    /// checks, never on a request path.
    fn eq(&self, other: &Self) -> bool {
        let (a, b) = (self.expose(), other.expose());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl Eq for SecretBytes {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let value = SecretBytes::new(b"hunter2-very-secret".to_vec());
        let shown = format!("{value:?} {:?}", Some(value.clone()));
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("redacted"));
    }

    #[test]
    fn clones_share_and_compare() {
        let a = SecretBytes::new(b"abc".to_vec());
        let b = a.clone();
        assert_eq!(a, b);
        assert_ne!(a, SecretBytes::new(b"abd".to_vec()));
        assert_eq!(b.expose(), b"abc");
    }
}
