//! What every Rust plugin needs on wasm32 and `no_std` gives no default for: the global
//! allocator (a bump allocator: a call's memory is freed all at once, when its fresh instance
//! goes or, in an instance the installation keeps, when the host calls `crmkit_reset`), the
//! exports `crmkit_alloc`, `crmkit_reset` and `crmkit_abi_v1`, and a panic handler that logs
//! the panic and traps.

use core::alloc::{GlobalAlloc, Layout};
use core::arch::wasm32;
use core::cell::Cell;

const PAGE: usize = 65_536;

/// The free bytes `next..end`; the heap starts at `start`, above the module's initial
/// memory, which holds the stack and the data.
struct Bump {
    start: Cell<usize>,
    next: Cell<usize>,
    end: Cell<usize>,
}

// SAFETY: a wasm32 plugin runs on one thread.
unsafe impl Sync for Bump {}

#[global_allocator]
static HEAP: Bump = Bump { start: Cell::new(0), next: Cell::new(0), end: Cell::new(0) };

impl Bump {
    fn take(&self, size: usize, align: usize) -> *mut u8 {
        if self.end.get() == 0 {
            let top = wasm32::memory_size(0) * PAGE;
            self.start.set(top);
            self.next.set(top);
            self.end.set(top);
        }
        let at = (self.next.get() + align - 1) & !(align - 1);
        let Some(new_next) = at.checked_add(size) else { return core::ptr::null_mut() };
        if new_next > self.end.get() {
            let pages = (new_next - self.end.get()).div_ceil(PAGE);
            if wasm32::memory_grow(0, pages) == usize::MAX {
                return core::ptr::null_mut();
            }
            self.end.set(self.end.get() + pages * PAGE);
        }
        self.next.set(new_next);
        at as *mut u8
    }
}

unsafe impl GlobalAlloc for Bump {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        self.take(layout.size(), layout.align())
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // The last block is given back; anything else stays until the instance goes.
        if ptr as usize + layout.size() == self.next.get() {
            self.next.set(ptr as usize);
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // The last block grows in place.
        if ptr as usize + layout.size() == self.next.get() {
            let new_next = ptr as usize + new_size;
            if new_next <= self.end.get() {
                self.next.set(new_next);
                return ptr;
            }
            self.next.set(ptr as usize);
            let again = self.take(new_size, layout.align());
            if !again.is_null() && again != ptr {
                core::ptr::copy(ptr, again, layout.size().min(new_size));
            }
            return again;
        }
        let new = self.take(new_size, layout.align());
        if !new.is_null() {
            core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
        }
        new
    }
}

/// The allocator the host places input and read answers through.
#[no_mangle]
pub extern "C" fn crmkit_alloc(len: i32) -> i32 {
    HEAP.take((len.max(1)) as usize, 8) as usize as i32
}

/// Frees everything allocated since the instance started: the host calls it after a call
/// that ended well, in an instance it keeps for the next call. Nothing allocated may be
/// used after it (a plugin that keeps heap data in a static between calls must not be
/// listed in `runtimes.wasm.reuse`).
#[no_mangle]
pub extern "C" fn crmkit_reset() {
    HEAP.next.set(HEAP.start.get());
}

/// The ABI version marker; never called.
#[no_mangle]
pub extern "C" fn crmkit_abi_v1() {}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    let text = alloc::format!("panicked: {info}");
    crate::host::log(crate::host::Level::Error, &text);
    wasm32::unreachable()
}
