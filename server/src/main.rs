//! `crmkit`: the command line of the CRM engine — create, check, fill, inspect and serve
//! installations. The commands live in the package's library (`crmkit::cli`); the binary
//! chooses the allocator.

/// The bulk import hands rows from a reading thread to the writing one, which frees them;
/// glibc's allocator is slow at frees across threads, mimalloc is not (see ARCHITECTURE.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    crmkit::cli::main()
}
