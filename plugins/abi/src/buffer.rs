//! Zero-copy byte buffers across the boundary.
//!
//! A batch read by one plugin travels to the host as an [`FfiBuffer`] whose
//! `release` is that plugin's; the host wraps it in `Bytes` without copying,
//! and hands it on to the writing plugin the same way with its own `release`.
//! Each buffer is therefore freed by the code that allocated it.

use std::ffi::c_void;

use bytes::Bytes;

use crate::ffi::FfiBuffer;

/// A buffer owned by the other side of the boundary, usable as `Bytes`.
#[derive(Debug)]
pub struct ForeignBuffer {
    raw: FfiBuffer,
}

// SAFETY: the owner's release function is thread-safe (it drops a
// `Box<Bytes>`), and the bytes are immutable while the buffer lives.
unsafe impl Send for ForeignBuffer {}
// SAFETY: as above; only shared reads happen through `as_ref`.
unsafe impl Sync for ForeignBuffer {}

impl ForeignBuffer {
    /// Takes ownership of `raw`.
    ///
    /// # Safety
    /// `raw` must describe `len` readable bytes that stay valid until
    /// `release(owner)` is called, and nobody else may release it.
    pub unsafe fn from_raw(raw: FfiBuffer) -> Self {
        Self { raw }
    }

    /// Turns the buffer into `Bytes` without copying.
    pub fn into_bytes(self) -> Bytes {
        if self.raw.len == 0 {
            return Bytes::new();
        }
        Bytes::from_owner(self)
    }
}

impl AsRef<[u8]> for ForeignBuffer {
    fn as_ref(&self) -> &[u8] {
        if self.raw.len == 0 || self.raw.ptr.is_null() {
            return &[];
        }
        // SAFETY: guaranteed valid until release by `from_raw`'s contract.
        unsafe { std::slice::from_raw_parts(self.raw.ptr, self.raw.len) }
    }
}

impl Drop for ForeignBuffer {
    fn drop(&mut self) {
        if let Some(release) = self.raw.release.take() {
            // SAFETY: released exactly once, by the allocator's own function.
            unsafe { release(self.raw.owner) }
        }
    }
}

/// Lends `bytes` across the boundary. The receiver releases it through this
/// crate's `release_bytes`, compiled into the side that owns the `Bytes`.
pub fn export_bytes(bytes: Bytes) -> FfiBuffer {
    if bytes.is_empty() {
        return FfiBuffer::empty();
    }
    let boxed = Box::new(bytes);
    FfiBuffer {
        ptr: boxed.as_ptr(),
        len: boxed.len(),
        owner: Box::into_raw(boxed).cast::<c_void>(),
        release: Some(release_bytes),
    }
}

unsafe extern "C" fn release_bytes(owner: *mut c_void) {
    if owner.is_null() {
        return;
    }
    // SAFETY: `owner` came from `Box::into_raw` in `export_bytes`, once.
    drop(unsafe { Box::from_raw(owner.cast::<Bytes>()) });
}

/// Writes `bytes` into a caller-provided out-parameter.
///
/// # Safety
/// `out` must be null or valid for writes.
pub unsafe fn write_out(out: *mut FfiBuffer, bytes: Bytes) {
    if out.is_null() {
        return;
    }
    // SAFETY: checked for null; valid for writes per the contract.
    unsafe { out.write(export_bytes(bytes)) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    struct Counted(Arc<AtomicUsize>, Vec<u8>);
    impl AsRef<[u8]> for Counted {
        fn as_ref(&self) -> &[u8] {
            &self.1
        }
    }
    impl Drop for Counted {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn buffers_are_released_once_by_their_allocator_and_never_copied() {
        let drops = Arc::new(AtomicUsize::new(0));
        let original = Bytes::from_owner(Counted(drops.clone(), b"row\tdata\n".to_vec()));
        let ptr = original.as_ptr();
        // Host -> plugin -> host again, as a batch does.
        let hop1 = unsafe { ForeignBuffer::from_raw(export_bytes(original)) }.into_bytes();
        let hop2 = unsafe { ForeignBuffer::from_raw(export_bytes(hop1)) }.into_bytes();
        assert_eq!(hop2.as_ptr(), ptr, "no copy on the way");
        assert_eq!(&hop2[..], b"row\tdata\n");
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        drop(hop2);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }
}
