//! Proves that secret buffers are wiped before their memory is freed, for the
//! cache and the envelope code.
//!
//! This test binary installs an allocator that, while scanning is on, looks into
//! every block being freed for a marker value. A secret that was zeroized before
//! being dropped leaves no marker; one that was not is counted. A control (a plain
//! `Vec` holding the marker) shows that the detector does see unwiped memory.

use gtc::secrets::backend::{DevStore, SecretsBackend};
use gtc::secrets::cache::{CachePolicy, SecretsService};
use gtc::secrets::envelope::Envelope;
use gtc::secrets::scope::SecretPath;
use gtc::secrets::secret_value::SecretBytes;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// A value no other code would produce by chance.
const MARKER: &[u8; 32] = b"ZEROIZE-MARKER-7f3c9a41d2e85b06!";

static SCANNING: AtomicBool = AtomicBool::new(false);
static FOUND: AtomicUsize = AtomicUsize::new(0);
/// One scanning test at a time (the counters are global).
static SERIAL: Mutex<()> = Mutex::new(());

struct ScanningAllocator;

unsafe impl GlobalAlloc for ScanningAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if SCANNING.load(Ordering::Relaxed) && layout.size() >= MARKER.len() {
            // SAFETY: the block is still allocated and `layout.size()` bytes long.
            let block = unsafe { std::slice::from_raw_parts(ptr, layout.size()) };
            if block.windows(MARKER.len()).any(|w| w == MARKER) {
                FOUND.fetch_add(1, Ordering::Relaxed);
            }
        }
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: ScanningAllocator = ScanningAllocator;

/// Runs `work` with scanning on; returns how many freed blocks held the marker.
fn unwiped_frees(work: impl FnOnce()) -> usize {
    FOUND.store(0, Ordering::SeqCst);
    SCANNING.store(true, Ordering::SeqCst);
    work();
    SCANNING.store(false, Ordering::SeqCst);
    FOUND.load(Ordering::SeqCst)
}

#[test]
fn the_detector_sees_unwiped_memory() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let found = unwiped_frees(|| {
        let plain = std::hint::black_box(MARKER.to_vec());
        drop(plain);
    });
    assert_eq!(found, 1);
}

#[test]
fn envelope_seal_and_open_leave_no_plaintext_or_key_behind() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let uri = "secrets://dev/acme/_/bot/key";
    let found = unwiped_frees(|| {
        // The marker as the value, and (separately) as the data key.
        let dek = SecretBytes::new(MARKER.to_vec());
        let sealed = Envelope::seal(
            MARKER,
            &dek,
            "vault:v1:x".into(),
            "greentic-dev-acme",
            uri,
            1,
        )
        .unwrap();
        let opened = sealed.open(&dek, uri, Some(1)).unwrap();
        assert_eq!(opened.expose(), MARKER);
        let parsed = Envelope::from_kv_data(sealed.to_kv_data().as_object().unwrap()).unwrap();
        assert_eq!(parsed.open(&dek, uri, Some(1)).unwrap().expose(), MARKER);
        drop((dek, opened, parsed, sealed));
    });
    assert_eq!(
        found, 0,
        "a freed block still held the plaintext or the data key"
    );
}

#[test]
fn cached_values_are_wiped_when_the_cache_lets_go() {
    let _one = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let store = DevStore::new(dir.path().join("store.json"));
    let path = SecretPath::parse_uri("secrets://dev/acme/_/bot/key").unwrap();
    store.put(&path, MARKER).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let found = unwiped_frees(|| {
        runtime.block_on(async {
            let service = SecretsService::new(
                SecretsBackend::DevStore(store.clone()),
                CachePolicy::default(),
            );
            for _ in 0..3 {
                let (value, _) = service.get(&path).await.unwrap();
                assert_eq!(value.unwrap().expose(), MARKER);
            }
            drop(service);
        });
    });
    assert_eq!(found, 0, "a freed block still held a cached secret");
}
